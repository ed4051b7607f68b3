"""How proxy inputs are made from the data's images (scaling_search.settings.proxy.information_pixels,
ImageData.resampled): a resolution step must change the proxy's information as it changes the deployment's."""

import pytest
import torch

from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.errors import UserError
from scaling_search.settings.proxy import ProxySettings, information_pixels

FACTOR = 40 / 224


@pytest.mark.parametrize("deployment", [224, 269, 314])
def test_native_images_are_used_as_they_are(deployment):
    assert information_pixels("native", 96, FACTOR, deployment, 224) is None


def test_shrunk_images_keep_the_deployment_ratio_of_information():
    # 96-px data: deployment sees 96 px at every gamma, so every proxy sees 96 * 40/224 = 17 px
    assert {information_pixels("shrunk", 96, FACTOR, d, 224) for d in (224, 269, 314)} == {17}
    assert information_pixels("shrunk", 32, FACTOR, 314, 224) == 6  # CIFAR: 32 * 40/224


def test_matched_images_add_information_only_where_deployment_gains_it():
    # data between the proxy's and the deployment's resolution: a gamma step adds nothing at deployment, so
    # nothing at the proxy; the baseline's proxy keeps its 40 px (and needs no resampling to see them)
    assert [information_pixels("matched", 64, FACTOR, d, 224) for d in (224, 269, 314)] == [None, 40, 40]
    # data below the proxy's resolution (CIFAR): the proxy already sees all there is, as deployment does
    assert information_pixels("matched", 32, FACTOR, 314, 224) is None
    # data above every deployment resolution: nothing to limit
    assert information_pixels("matched", 600, FACTOR, 314, 224) is None
    # data between two deployment resolutions: the largest network sees only the native 300 px
    assert information_pixels("matched", 300, FACTOR, 314, 224) == round(40 * 300 / 224)


def test_resampled_data_keeps_labels_and_the_deployment_normalisation():
    data = synthetic_dataset(4, 2, resolution=48)
    small = data.resampled(12)
    assert small.native_resolution == 12 and small.train_images.dtype == torch.uint8
    assert torch.equal(small.train_labels, data.train_labels) and small.classes == data.classes
    assert small.pixel_statistics() == data.pixel_statistics()
    assert data.resampled(12) is small and data.resampled(48) is data
    assert small.split("train", 40).images.shape[-1] == 40  # then resized to the proxy's resolution


def test_an_unknown_way_is_refused():
    with pytest.raises(UserError, match="images must be one of native, shrunk, matched"):
        ProxySettings(images="blurred")


def test_a_regime_names_how_its_proxy_images_were_made():
    from scaling_search.search.fidelity import regime_text

    regime = {"epochs": 3, "proxy_resolution": 40, "proxy_width": 0.5}
    assert regime_text(regime) == "3 epoch(s) at 40 px, width x0.5"
    assert regime_text({**regime, "images": "matched"}) == "3 epoch(s) at 40 px, width x0.5, matched images"
