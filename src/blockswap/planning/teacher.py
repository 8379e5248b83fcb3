"""The workflow's pretrained teacher (teacher.pretrained): the spec its students are given, and the
blocks every student keeps as the teacher's own (teacher.keep)."""

from __future__ import annotations

from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.teacher_specs import SOURCES, kept_blocks, weights_path


def kept(config: dict) -> dict:
    """{slot: block type} every student keeps as the pretrained teacher's own (teacher.keep)."""
    teacher = config["teacher"]
    if not teacher.get("keep"):
        return {}  # (nor is the teacher's weights file looked for)
    return kept_blocks(teacher["keep"], teacher_spec(config), parse_arch(teacher["arch"]), "teacher.keep")


def teacher_spec(config: dict) -> str | None:
    """What students get as `--teacher` when the teacher is pretrained (the paper's ImageNet teacher,
    or a user's own network): `SOURCE:<name>:<weights file>`, the file resolved now so that it is a
    declared input of the DAG and a missing file stops the run before any job; None when teachers
    are trained."""
    teacher = config["teacher"]
    if not teacher["pretrained"]:
        return None
    source = SOURCES[teacher["pretrained"]]
    arch = parse_arch(teacher["arch"]).name
    by_skeleton = {a.skeleton: a.builder for a in source.archs.values() if a.arch == a.skeleton}
    name = teacher["model"] or by_skeleton.get(arch)
    if name not in source.archs or source.archs[name].skeleton != arch:
        fits = [a.builder for a in source.archs.values() if a.skeleton == arch]
        raise BlockswapError(
            f"teacher.pretrained: {source.name} has no {teacher['model'] or 'ResNet'} with the skeleton {arch}; "
            f"allowed teacher.model for teacher.arch {arch}: {', '.join(fits) or 'none'} "
            f"(teacher.arch: {', '.join(sorted({a.skeleton for a in source.archs.values()}))})"
        )
    if not teacher["weights"] and config["dataset"] != "imagenet":
        raise BlockswapError(
            f"teacher.pretrained: the published {source.name} weights are ImageNet's; dataset is {config['dataset']}: "
            "give teacher.weights, a state dict of your network with the dataset's classes"
        )
    spec = f"{source.name}:{name}" + (f":{teacher['weights']}" if teacher["weights"] else "")
    return f"{source.name}:{name}:{weights_path(spec)}"
