"""A run's files are told apart by what they are, not where they sit: a model.pt or history.csv
copied in from another run is refused, a student records the digest of the weights that taught it,
a moved project resumes, a derived table whose input changed is named stale."""

import json
import shutil
from pathlib import Path

import pytest

from blockswap.cli import main
from blockswap.provenance import file_digest, provenance_path

SIZE = 8
COMMON = ["--dataset", "digits", "--image-size", str(SIZE), "--batch-size", "64", "--device", "cpu", "--quiet"]


def train(out: Path, *extra: str, epochs: int = 1, arch: str = "wrn-10-1", seed: int = 0) -> int:
    args = ["train", "--arch", arch, *COMMON, "--epochs", str(epochs), "--seed", str(seed), "--out", str(out)]
    return main([*args, *extra])


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    for seed in (0, 1):
        assert train(root / "teachers" / f"seed-{seed}", seed=seed) == 0
    return root


def one_line_error(capsys, code: int, *parts: str) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


def test_a_model_file_swapped_for_another_runs_is_refused(teachers, tmp_path, capsys):
    project = tmp_path / "p"
    shutil.copytree(teachers, project)
    seed0, seed1 = project / "teachers" / "seed-0", project / "teachers" / "seed-1"
    assert main(["evaluate", str(seed0), "--dataset", "digits", "--device", "cpu"]) == 0
    capsys.readouterr()
    for name in ("model.pt", provenance_path(seed1 / "model.pt").name):  # the file with its own, valid seal
        shutil.copy(seed1 / name, seed0 / name)
    code = main(["evaluate", str(seed0), "--dataset", "digits", "--device", "cpu"])
    one_line_error(capsys, code, f"{seed0 / 'model.pt'} is not the file", "records for its run (seed 0)")
    code = train(tmp_path / "student", "--teacher", str(seed0))
    one_line_error(capsys, code, f"{seed0 / 'model.pt'} is not the file")
    assert not (tmp_path / "student" / "metrics.json").exists()


def test_a_student_records_its_teachers_weights_and_resumes_after_a_move(teachers, tmp_path, capsys):
    project = tmp_path / "p"
    shutil.copytree(teachers, project)
    student = project / "students" / "s" / "seed-0"
    assert train(student, "--teacher", str(project / "teachers" / "seed-0"), "--arch", "wrn-10-1") == 0
    metrics = json.loads((student / "metrics.json").read_text())
    weights = file_digest(project / "teachers" / "seed-0" / "model.pt")
    assert metrics["teacher_source"]["weights_sha256"] == weights
    assert metrics["model_sha256"] == file_digest(student / "model.pt")
    assert metrics["history_sha256"] == file_digest(student / "history.csv")
    capsys.readouterr()

    moved = tmp_path / "moved"
    project.rename(moved)  # another mount point, as after a requeue on another node
    student = moved / "students" / "s" / "seed-0"
    assert train(student, "--teacher", str(moved / "teachers" / "seed-0")) == 0
    assert json.loads((student / "metrics.json").read_text())["provenance"] == metrics["provenance"]  # not retrained
    capsys.readouterr()

    # Other weights at the teacher's path make it another run.
    teacher = moved / "teachers" / "seed-0"
    for name in ("model.pt", "model.pt.provenance.json", "metrics.json", "metrics.json.provenance.json"):
        shutil.copy(moved / "teachers" / "seed-1" / name, teacher / name)
    code = train(student, "--teacher", str(teacher))
    one_line_error(capsys, code, "holds a finished run of a different configuration")


def test_an_edited_or_swapped_history_does_not_reach_the_learning_curves(teachers, tmp_path, capsys):
    project = tmp_path / "p"
    shutil.copytree(teachers, project)
    history0 = project / "teachers" / "seed-0" / "history.csv"
    history1 = project / "teachers" / "seed-1" / "history.csv"
    out = tmp_path / "curves.png"
    assert provenance_path(history0).is_file()  # sealed when written
    assert main(["figure", "learning_curves", str(history0), "--out", str(out)]) == 0
    capsys.readouterr()
    text = history0.read_text()
    history0.write_text(text.replace(",", ",9", 1))
    code = main(["figure", "learning_curves", str(history0), "--out", str(tmp_path / "edited.png")])
    one_line_error(capsys, code, f"{history0} changed after it was written")
    for source in (history1, provenance_path(history1)):
        shutil.copy(source, history0.parent / source.name)
    code = main(["figure", "learning_curves", str(history0), "--out", str(tmp_path / "swapped.png")])
    one_line_error(capsys, code, f"{history0} is not the file")
    assert not (tmp_path / "edited.png").exists() and not (tmp_path / "swapped.png").exists()


def test_a_table_whose_input_changed_is_stale(teachers, tmp_path, capsys, monkeypatch):
    project = tmp_path / "p"
    shutil.copytree(teachers, project)
    monkeypatch.chdir(project)
    metrics = [f"teachers/seed-{seed}/metrics.json" for seed in (0, 1)]
    assert main(["report", "students", *metrics, "--csv", "students.csv"]) == 0
    assert main(["report", "table2", "students.csv", "--csv", "table2.csv"]) == 0
    capsys.readouterr()
    # seed 0 retrained (another epoch count): the students table still holds its old numbers.
    shutil.rmtree("teachers/seed-0")
    assert train(Path("teachers/seed-0"), epochs=2) == 0
    capsys.readouterr()
    code = main(["report", "table2", "students.csv", "--csv", "table2.csv"])
    one_line_error(capsys, code, "students.csv is stale: its input teachers/seed-0/metrics.json changed")
    # Moved elsewhere, its inputs are not there to compare: the table is read as it is.
    monkeypatch.chdir(tmp_path)
    shutil.copy(project / "students.csv", tmp_path / "students.csv")
    shutil.copy(provenance_path(project / "students.csv"), provenance_path(tmp_path / "students.csv"))
    shutil.move(project, tmp_path / "elsewhere")
    assert main(["report", "table2", "students.csv", "--csv", "table2.csv"]) == 0
