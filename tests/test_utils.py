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

