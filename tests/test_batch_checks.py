"""Minibatches batch norm cannot train on (one image where the last stage is 1x1), found from the
settings before any training or scoring starts: by the train and score commands, and by the
functions a workflow configuration check calls with its keys' names."""

import pytest

from blockswap import BlockswapError
from blockswap.networks.architectures import parse_arch
from blockswap.validation import check_batch_norm_batch, check_training_batches, smallest_training_batch

WRN = parse_arch("wrn-10-2")  # stages at the image size, then halved twice
RESNET = parse_arch("resnet-18")  # /4 in the stem, then halved three times: 1x1 up to 32 px
KEYS = {"batch_size": "training.batch_size", "drop_last": "training.drop_last", "image_size": "image_size"}


@pytest.mark.parametrize(
    "train_size,batch_size,drop_last,smallest",
    [
        (1077, 538, False, 1),
        (1077, 538, True, 538),
        (1077, 128, False, 53),
        (1076, 538, False, 538),
        (1077, 2000, True, 1077),  # one batch of all of it, drop_last or not (data.loader)
        (1077, 1077, False, 1077),
        (1, 128, False, 1),
    ],
)
def test_the_smallest_training_batch(train_size, batch_size, drop_last, smallest):
    assert smallest_training_batch(train_size, batch_size, drop_last) == smallest


def test_a_last_batch_of_one_image_at_1x1_is_named_with_the_way_out():
    with pytest.raises(BlockswapError) as err:
        check_training_batches(WRN, (4, 4), 538, False, 1077)
    assert str(err.value) == (
        "the last training minibatch of each epoch (1077 training images in batches of 538) holds 1 image "
        "and wrn-10-2's last stage is 1x1 at 4x4 px: batch norm cannot train on one value per channel; "
        "choose another --batch-size, set --drop-last, or use a larger --image-size"
    )
    check_training_batches(WRN, (4, 4), 538, True, 1077)  # dropped
    check_training_batches(WRN, (5, 5), 538, False, 1077)  # 2x2
    check_training_batches(WRN, (4, 4), 128, False, 1077)  # a last batch of 53


def test_a_configuration_is_checked_with_its_keys_names():
    """Read before any data: without the training-split size, only the full batches are known."""
    with pytest.raises(BlockswapError, match=r"every training minibatch \(training\.batch_size 1\) holds 1 image"):
        check_training_batches(RESNET, (32, 32), 1, names=KEYS)
    with pytest.raises(BlockswapError, match=r"set training\.drop_last, or use a larger image_size$"):
        check_training_batches(RESNET, (32, 32), 2, train_size=5, names=KEYS)
    check_training_batches(RESNET, (33, 33), 1, names=KEYS)  # 2x2
    check_training_batches(RESNET, (32, 32), 2, names=KEYS)


def test_a_proxy_minibatch_of_one_image_at_1x1():
    with pytest.raises(BlockswapError, match=r"^the scoring minibatch holds 1 image and resnet-18's last stage is 1x1"):
        check_batch_norm_batch(RESNET, (32, 32), 1, "the scoring minibatch", "set search.batch_size to 2 or more")
    check_batch_norm_batch(RESNET, (32, 32), 2, "the scoring minibatch", "")
