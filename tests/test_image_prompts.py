"""``ImagePrompts``: the kept bands of a picture, their grid positions and codes."""
import pytest
import torch
from fakes import FakeVAE, make_image

from rudolph.errors import InputError
from rudolph.image_prompts import ImagePrompts
from rudolph.model.config import Layout
from rudolph.tasks import sequences as codec


@pytest.fixture
def vae():
    return FakeVAE(n_codes=64).eval()


def test_image_prompt_errors(vae):
    img = make_image(32)
    with pytest.raises(ValueError, match='unknown border'):
        ImagePrompts(img, {'top': 1}, vae, image_size=32)
    with pytest.raises(ValueError, match='all borders are 0'):
        ImagePrompts(img, {'up': 0}, vae, image_size=32)
    with pytest.raises(ValueError, match='do not fit'):
        ImagePrompts(img, {'up': 3, 'down': 2}, vae, image_size=32)


class RecordingVAE(FakeVAE):
    """Codes each call's image with a different code base, and remembers the crops it saw."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def get_codebook_indices(self, img):
        self.seen.append(tuple(img.shape[-2:]))
        h, w = img.shape[-2] // 8, img.shape[-1] // 8
        return (len(self.seen) * 10 + torch.arange(h * w)).unsqueeze(0) % 64


@pytest.mark.parametrize('borders', [{'up': 1}, {'down': 2}, {'left': 1}, {'right': 3}, {'up': 1, 'down': 1},
                                     {'left': 1, 'right': 1}, {'up': 1, 'left': 2}, {'down': 1, 'right': 1},
                                     {'up': 1, 'down': 1, 'left': 1, 'right': 1}, {'up': 4}])
def test_image_prompt_positions_per_border(vae, borders):
    n = 4
    prompts = ImagePrompts(make_image(32), borders, vae, image_size=32)
    b = {k: borders.get(k, 0) for k in ('up', 'down', 'left', 'right')}
    expected = [r * n + c for r in range(n) for c in range(n)
                if r < b['up'] or r >= n - b['down'] or c < b['left'] or c >= n - b['right']]
    assert prompts.image_prompts_idx == expected
    assert prompts.mask.tolist() == [i in expected for i in range(n * n)]
    assert prompts.image_prompts.shape == (1, n * n) and prompts.image_prompts.dtype == torch.long
    layout = Layout(L=5, N=n, R=3, V=64, plain_text_vocab=59, image_vocab=32, image_vocab_total=32)
    assert codec.prompt_positions(prompts, layout) == {5 + i: int(prompts.image_prompts[0, i]) for i in expected}


def test_crop_first_encodes_each_band_from_its_own_crop():
    vae = RecordingVAE()
    prompts = ImagePrompts(make_image(32), {'up': 1, 'right': 2}, vae, crop_first=True, image_size=32)
    assert vae.seen == [(8, 32), (32, 16)]  # the up band (1 row), then the right band (2 columns); no full image
    grid = prompts.image_prompts[0].reshape(4, 4)
    right = (20 + torch.arange(8)).reshape(4, 2)  # the second call's codes, row-major over its 4x2 crop
    assert torch.equal(grid[:, 2:], right)  # the later band wins where they overlap
    assert torch.equal(grid[0, :2], torch.tensor([10, 11]))  # the first call's codes
    whole = RecordingVAE()
    plain = ImagePrompts(make_image(32), {'up': 1, 'right': 2}, whole, image_size=32)
    assert whole.seen == [(32, 32)] and torch.equal(plain.image_prompts[0], (10 + torch.arange(16)) % 64)


def test_image_prompt_borders_are_input_errors(vae):
    with pytest.raises(InputError, match='unknown border names'):
        ImagePrompts(make_image(32), {'top': 1}, vae)
