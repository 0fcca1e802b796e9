"""rudolph.utils: PIL/tensor conversion, grids, seeding."""
import torch

from rudolph import pipelines, utils


def test_utils_roundtrip_and_show(tmp_path):
    images = torch.rand(3, 3, 16, 16)
    pil = utils.torch_tensors_to_pil_list(images)
    back = utils.pil_list_to_torch_tensors(pil)
    assert back.shape == (3, 3, 16, 16) and back.dtype == torch.uint8
    assert (back.float() / 255 - images).abs().max() <= 1 / 255 + 1e-6
    pipelines.show(pil, nrow=2, save_dir=str(tmp_path), show=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['group_0.png', 'img_0.png', 'img_1.png', 'img_2.png']
    utils.seed_everything(3)
    a = torch.rand(2)
    utils.seed_everything(3)
    assert torch.equal(a, torch.rand(2))



def test_save_codebook_images_upscales_each_batch(tmp_path):
    from fakes import FakeVAE
    from PIL import Image

    calls = []

    def double(pictures):  # a stand-in upscaler: nearest x2
        calls.append(len(pictures))
        return pictures.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)

    codes = torch.randint(0, 64, (3, 4))
    paths, grid = utils.save_codebook_images(FakeVAE(), codes, str(tmp_path), nrow=2, bs=2, upscaler=double)
    assert calls == [2, 1] and [Image.open(p).size for p in paths] == [(32, 32)] * 3
    assert Image.open(grid).size == (2 * 34 + 2, 2 * 34 + 2)
    (tmp_path / 'plain').mkdir()
    plain, _ = utils.save_codebook_images(FakeVAE(), codes, str(tmp_path / 'plain'), nrow=2)
    assert Image.open(plain[0]).size == (16, 16)


def test_check_fraction_names_the_value():
    import pytest

    from rudolph.errors import ConfigError

    utils.check_fraction('w', 0)
    utils.check_fraction('w', 1.0)
    for bad in (-0.1, 1.5, True, '0.5', None):
        with pytest.raises(ConfigError, match='w must be in'):
            utils.check_fraction('w', bad)
    with pytest.raises(ConfigError, match='q must be a quantile'):
        utils.check_fraction('q', 2, 'a quantile in [0, 1]')
