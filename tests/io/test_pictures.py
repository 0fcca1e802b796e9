"""rudolph.io.pictures: the one picture reader (decoded, file closed, one error for missing/bad/oversized)."""
import os

import numpy as np
import pytest
from fakes import write_header_only_png
from PIL import Image

from rudolph.errors import ImageFileError, InputError
from rudolph.io.pictures import MAX_PIXELS, open_image


def _open_fds_to(path):
    real = os.path.realpath(path)
    found = []
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink(f'/proc/self/fd/{fd}') == real:
                found.append(fd)
        except OSError:
            pass
    return found


@pytest.mark.parametrize('mode, ext', [('RGB', 'png'), ('L', 'png'), ('RGBA', 'png'), ('RGB', 'bmp')])
def test_a_picture_is_decoded_in_its_own_mode(tmp_path, mode, ext):
    rng = np.random.default_rng(0)
    channels = {'RGB': 3, 'L': 1, 'RGBA': 4}[mode]
    pixels = rng.integers(0, 256, (7, 9, channels), dtype=np.uint8).squeeze(-1 if channels == 1 else ())
    path = tmp_path / f'pic.{ext}'
    Image.fromarray(pixels, mode).save(path)
    img = open_image(path)
    assert img.mode == mode and img.size == (9, 7)
    assert np.array_equal(np.asarray(img), pixels)


def test_the_file_is_closed(tmp_path):
    path = tmp_path / 'pic.png'
    Image.new('RGB', (5, 5), (10, 20, 30)).save(path)
    img = open_image(str(path))
    assert _open_fds_to(path) == []
    os.remove(path)  # the picture no longer needs its file
    assert img.getpixel((2, 2)) == (10, 20, 30)


@pytest.mark.parametrize('path', [None, ''])
def test_no_path_is_an_image_file_error(path):
    with pytest.raises(ImageFileError, match='image not found'):
        open_image(path)


def test_a_missing_file_names_the_path(tmp_path):
    path = tmp_path / 'absent.png'
    with pytest.raises(ImageFileError) as info:
        open_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError) and isinstance(info.value, InputError)


def test_a_folder_is_not_a_picture(tmp_path):
    with pytest.raises(ImageFileError, match='image not found'):
        open_image(tmp_path)


@pytest.mark.parametrize('content', [b'just some text\n', b'', b'\x89PNG\r\n\x1a\n' + b'\x00' * 10],
                         ids=['text', 'empty', 'png-signature-only'])
def test_a_file_that_is_no_picture_names_the_path(tmp_path, content):
    path = tmp_path / 'not-a-picture.png'
    path.write_bytes(content)
    with pytest.raises(ImageFileError) as info:
        open_image(path)
    assert f'cannot read the image {path}' in str(info.value)
    assert _open_fds_to(path) == []


def test_a_truncated_picture_names_the_path(tmp_path):
    whole, path = tmp_path / 'whole.png', tmp_path / 'cut.png'
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    data = whole.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ImageFileError, match='cut.png'):
        open_image(path)


@pytest.mark.parametrize('width, height', [(100_000, 100_000), (2, MAX_PIXELS // 2 + 1), (20_000, 20_000)])
def test_a_picture_larger_than_max_pixels_is_refused_from_its_header(tmp_path, width, height):
    assert width * height > MAX_PIXELS
    path = tmp_path / 'bomb.png'
    write_header_only_png(path, width, height)
    with pytest.raises(ImageFileError) as info:
        open_image(path)
    message = str(info.value)
    # refused for its size (from the header: PIL's own check at open, or ours), not for its missing pixel data
    assert message.startswith(f'cannot read the image {path}: ')
    assert f'more than {MAX_PIXELS // 10**6} megapixels are refused' in message


def test_a_small_header_only_picture_fails_for_its_data_not_its_size(tmp_path):
    path = tmp_path / 'empty-data.png'
    write_header_only_png(path, 4, 4)
    with pytest.raises(ImageFileError) as info:
        open_image(path)
    assert 'megapixels' not in str(info.value) and str(path) in str(info.value)


def test_the_limit_holds_whatever_pil_is_set_to(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', None)
    path = tmp_path / 'bomb.png'
    write_header_only_png(path, 10_000, 10_000)
    with pytest.raises(ImageFileError) as info:
        open_image(path)
    assert f'{path}: it is 10000x10000 px (100 megapixels)' in str(info.value)


def test_max_pixels_is_pils_default_limit():
    assert MAX_PIXELS == 89_478_485
