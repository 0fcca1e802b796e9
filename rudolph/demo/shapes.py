"""Synthetic "shapes" dataset: 64x64 pictures of one coloured shape with Russian captions.

Every sample is a pure function of ``(seed, index)``: :func:`make_sample` draws its
attributes (shape, colour, size, position, background) and a small jitter from
``numpy.random.default_rng([seed, index])``, renders the picture with PIL and writes the
captions. :func:`check_image` is the pixel-based judge used by the evaluation: colour =
nearest palette colour of the foreground pixels, shape = nearest centroid of a few mask
features (fill ratio, hole, corner and band occupancy), computed on clean renders.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from rudolph.model.configs import VQA_TEMPLATE

__all__ = ['SHAPES', 'COLOURS', 'BACKGROUNDS', 'SIZES', 'POSITIONS', 'IMAGE_SIZE', 'Sample', 'make_sample',
           'make_samples', 'render', 'caption', 'captions', 'question_answers', 'attribute_texts', 'check_image',
           'parse_colour', 'parse_shape', 'all_texts', 'VQA_COLOUR', 'VQA_SHAPE', 'VQA_POSITION',
           'ZS_COLOUR_TEMPLATE', 'ZS_SHAPE_TEMPLATE', 'write_imagefolder']

IMAGE_SIZE = 64

# name -> (gender, nominative)       m: masculine, f: feminine, n: neuter
SHAPES: Dict[str, Tuple[str, str]] = {
    'circle': ('m', 'круг'),
    'square': ('m', 'квадрат'),
    'triangle': ('m', 'треугольник'),
    'star': ('f', 'звезда'),
    'ring': ('n', 'кольцо'),
    'cross': ('m', 'крест'),
}
# name -> (rgb, {m, f, n, gen})
COLOURS: Dict[str, Tuple[Tuple[int, int, int], Dict[str, str]]] = {
    'red': ((225, 30, 30), dict(m='красный', f='красная', n='красное', gen='красного')),
    'orange': ((255, 140, 0), dict(m='оранжевый', f='оранжевая', n='оранжевое', gen='оранжевого')),
    'yellow': ((245, 225, 20), dict(m='желтый', f='желтая', n='желтое', gen='желтого')),
    'green': ((30, 170, 50), dict(m='зеленый', f='зеленая', n='зеленое', gen='зеленого')),
    'blue': ((30, 70, 230), dict(m='синий', f='синяя', n='синее', gen='синего')),
    'purple': ((150, 40, 200), dict(m='фиолетовый', f='фиолетовая', n='фиолетовое', gen='фиолетового')),
}
# name -> (rgb, nominative, prepositional)
BACKGROUNDS: Dict[str, Tuple[Tuple[int, int, int], str, str]] = {
    'white': ((255, 255, 255), 'белый', 'белом'),
    'black': ((0, 0, 0), 'черный', 'черном'),
    'gray': ((128, 128, 128), 'серый', 'сером'),
}
# name -> (half-size in px, {m, f, n} adjective, short answer)
SIZES: Dict[str, Tuple[int, Dict[str, str], str]] = {
    'big': (15, dict(m='большой', f='большая', n='большое'), 'большая'),
    'small': (9, dict(m='маленький', f='маленькая', n='маленькое'), 'маленькая'),
}
# name -> (centre x, centre y, words)
POSITIONS: Dict[str, Tuple[int, int, str]] = {
    'left': (20, 32, 'слева'),
    'right': (44, 32, 'справа'),
    'top': (32, 20, 'сверху'),
    'bottom': (32, 44, 'снизу'),
    'centre': (32, 32, 'в центре'),
}

VQA_COLOUR = 'какого цвета фигура?'
VQA_SHAPE = 'какая фигура?'
VQA_POSITION = 'где фигура?'
ZS_COLOUR_TEMPLATE = 'цвет фигуры: {}'
ZS_SHAPE_TEMPLATE = 'форма фигуры: {}'


@dataclass
class Sample:
    shape: str
    colour: str
    size: str
    position: str
    background: str
    image: Image.Image = field(repr=False)
    jitter: Tuple[int, int, int] = (0, 0, 0)

    @property
    def captions(self) -> List[str]:
        return captions(self)

    @property
    def caption(self) -> str:
        return caption(self, 0)

    @property
    def canonical_image(self) -> Image.Image:
        """The same picture without the jitter: the shape exactly at its named size and position."""
        return render(self.shape, self.colour, self.size, self.position, self.background)


# ----------------------------------------------------------------------------- rendering
def _polygon(kind: str, cx: float, cy: float, r: float) -> List[Tuple[float, float]]:
    if kind == 'triangle':
        # equilateral-ish, pointing up, bbox 2r x 2r
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == 'star':
        pts = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.42
            angle = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + radius * np.cos(angle), cy + 0.1 * r + radius * np.sin(angle)))
        return pts
    raise ValueError(kind)


def render(shape: str, colour: str, size: str, position: str, background: str,
           jitter: Tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """The 64x64 RGB picture of one shape (``jitter`` = (dx, dy, dr) in pixels)."""
    bg = BACKGROUNDS[background][0]
    fg = COLOURS[colour][0]
    r = SIZES[size][0] + jitter[2]
    cx, cy = POSITIONS[position][0] + jitter[0], POSITIONS[position][1] + jitter[1]
    scale = 4  # draw 4x larger and downsample: smooth edges
    img = Image.new('RGB', (IMAGE_SIZE * scale, IMAGE_SIZE * scale), bg)
    draw = ImageDraw.Draw(img)
    X, Y, R = cx * scale, cy * scale, r * scale
    if shape == 'circle':
        draw.ellipse([X - R, Y - R, X + R, Y + R], fill=fg)
    elif shape == 'square':
        s = R * 0.9
        draw.rectangle([X - s, Y - s, X + s, Y + s], fill=fg)
    elif shape == 'ring':
        draw.ellipse([X - R, Y - R, X + R, Y + R], fill=fg)
        inner = R * 0.5
        draw.ellipse([X - inner, Y - inner, X + inner, Y + inner], fill=bg)
    elif shape == 'cross':
        w = R * 0.36
        draw.rectangle([X - w, Y - R, X + w, Y + R], fill=fg)
        draw.rectangle([X - R, Y - w, X + R, Y + w], fill=fg)
    elif shape in ('triangle', 'star'):
        draw.polygon(_polygon(shape, X, Y, R), fill=fg)
    else:
        raise ValueError(f'unknown shape {shape!r}; expected one of {sorted(SHAPES)}')
    return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)


def make_sample(index: int, seed: int = 0) -> Sample:
    """Sample ``index`` of the dataset ``seed`` (deterministic)."""
    rng = np.random.default_rng([int(seed), int(index)])
    shape = list(SHAPES)[rng.integers(len(SHAPES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    size = list(SIZES)[rng.integers(len(SIZES))]
    position = list(POSITIONS)[rng.integers(len(POSITIONS))]
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    jitter = (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)), int(rng.integers(-1, 2)))
    return Sample(shape, colour, size, position, background, render(shape, colour, size, position, background, jitter),
                  jitter)


def make_samples(n: int, seed: int = 0, start: int = 0) -> List[Sample]:
    return [make_sample(i, seed) for i in range(start, start + n)]


# ----------------------------------------------------------------------------- texts
def _words(s: Sample) -> Dict[str, str]:
    gender, shape_word = SHAPES[s.shape]
    forms = COLOURS[s.colour][1]
    return dict(shape=shape_word, colour=forms[gender], colour_m=forms['m'], colour_gen=forms['gen'],
                size=SIZES[s.size][1][gender], pos=POSITIONS[s.position][2],
                bg=BACKGROUNDS[s.background][1], bg_prep=BACKGROUNDS[s.background][2])


#: caption phrasings (index 0: the full description, 1: the form ``image_captioning`` continues).
CAPTION_TEMPLATES = (
    '{size} {colour} {shape} {pos} на {bg_prep} фоне',
    'на картинке {size} {colour} {shape} {pos}',
    '{colour} {shape} {pos} на {bg_prep} фоне',
    '{shape} {colour_gen} цвета {pos}',
    '{size} {colour} {shape}',
)


def caption(s: Sample, phrasing: int = 0) -> str:
    return CAPTION_TEMPLATES[phrasing].format(**_words(s))


def captions(s: Sample) -> List[str]:
    return [caption(s, k) for k in range(len(CAPTION_TEMPLATES))]


def question_answers(s: Sample) -> List[Tuple[str, str]]:
    """``(question, answer)`` pairs about the picture."""
    w = _words(s)
    return [(VQA_COLOUR, w['colour_m']), (VQA_SHAPE, w['shape']), (VQA_POSITION, w['pos'])]


def attribute_texts(s: Sample) -> List[str]:
    """Short statements used as zero-shot classification templates."""
    w = _words(s)
    return [ZS_COLOUR_TEMPLATE.format(w['colour_m']), ZS_SHAPE_TEMPLATE.format(w['shape'])]


def colour_classes() -> List[str]:
    return [COLOURS[c][1]['m'] for c in COLOURS]


def shape_classes() -> List[str]:
    return [SHAPES[s][1] for s in SHAPES]


def write_imagefolder(root: str, n: int, by: str = 'shape', seed: int = 0, start: int = 0) -> Dict[str, int]:
    """Pictures ``start`` .. ``start + n - 1`` of the dataset ``seed`` as an ImageFolder by ``'shape'`` or ``'colour'``.

    ``root/<class>/<index>.png`` with English folder names (``circle``, ``red``...) and
    ``root/classes.json`` mapping each folder to its Russian class name (``круг``, ``красный``), the
    names the zero-shot templates :data:`ZS_SHAPE_TEMPLATE` / :data:`ZS_COLOUR_TEMPLATE` take.
    Returns the number of pictures of each class (every class gets a folder, even an empty one).
    """
    if by not in ('shape', 'colour'):
        raise ValueError(f"by must be 'shape' or 'colour', got {by!r}")
    names = {k: v[1] for k, v in SHAPES.items()} if by == 'shape' else {k: v[1]['m'] for k, v in COLOURS.items()}
    counts = dict.fromkeys(names, 0)
    for folder in names:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for index in range(start, start + n):
        sample = make_sample(index, seed)
        label = sample.shape if by == 'shape' else sample.colour
        sample.image.save(os.path.join(root, label, f'{index:06d}.png'))
        counts[label] += 1
    with open(os.path.join(root, 'classes.json'), 'w', encoding='utf-8') as f:
        json.dump(names, f, ensure_ascii=False, indent=1)
    return counts


def all_texts(samples: Sequence[Sample]) -> List[str]:
    """Every text the models see (tokenizer training corpus)."""

    out = []
    for s in samples:
        out += captions(s) + attribute_texts(s)
        out += [VQA_TEMPLATE.format(question=q) + ' ' + a for q, a in question_answers(s)]
    return out


_COLOUR_STEMS = {'red': 'красн', 'orange': 'оранжев', 'yellow': 'желт', 'green': 'зелен', 'blue': 'син',
                 'purple': 'фиолетов'}
_SHAPE_STEMS = {'circle': 'круг', 'square': 'квадрат', 'triangle': 'треугольник', 'star': 'звезд',
                'ring': 'кольц', 'cross': 'крест'}


def _parse(text: str, stems: Dict[str, str]) -> Optional[str]:
    found = {name for word in text.lower().replace(',', ' ').split() for name, stem in stems.items()
             if word.startswith(stem)}
    return found.pop() if len(found) == 1 else None


def parse_colour(text: str) -> Optional[str]:
    """The colour a text names (``None`` if none or several)."""
    return _parse(text, _COLOUR_STEMS)


def parse_shape(text: str) -> Optional[str]:
    """The shape a text names (``None`` if none or several)."""
    return _parse(text, _SHAPE_STEMS)


# ----------------------------------------------------------------------------- pixel judge
def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every background region not connected to the border."""
    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), dtype=bool)
    free = np.ones((h + 2, w + 2), dtype=bool)
    free[1:-1, 1:-1] = ~mask
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    # iterative dilation restricted to free pixels (small images: fast enough)
    while True:
        grown = outside.copy()
        grown[1:, :] |= outside[:-1, :]
        grown[:-1, :] |= outside[1:, :]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= free
        grown |= outside
        if (grown == outside).all():
            break
        outside = grown
    return ~outside[1:-1, 1:-1]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of ``mask``."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, current = 0, 0, 0
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        current += 1
        stack, size = [(y0, x0)], 0
        labels[y0, x0] = current
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else mask


def _features(mask: np.ndarray) -> Optional[np.ndarray]:
    ys, xs = np.nonzero(mask)
    if len(ys) < 6:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = mask[y0:y1, x0:x1].astype(np.float64)
    filled = _fill_holes(mask)[y0:y1, x0:x1].astype(np.float64)
    h, w = box.shape

    def region(a, ya, yb, xa, xb):
        part = a[int(round(ya * h)):max(int(round(yb * h)), int(round(ya * h)) + 1),
                 int(round(xa * w)):max(int(round(xb * w)), int(round(xa * w)) + 1)]
        return float(part.mean()) if part.size else 0.0

    fill = filled.mean()
    hole = 1.0 - box.sum() / max(filled.sum(), 1.0)
    corners_top = (region(filled, 0, .25, 0, .25) + region(filled, 0, .25, .75, 1)) / 2
    corners_bottom = (region(filled, .75, 1, 0, .25) + region(filled, .75, 1, .75, 1)) / 2
    top_band = region(filled, 0, .3, 0, 1)
    bottom_band = region(filled, .7, 1, 0, 1)
    centre = region(box, .4, .6, .4, .6)
    mid_row = region(filled, .4, .6, 0, 1)
    aspect = w / h
    top_centre = region(filled, 0, .2, .4, .6)
    bottom_centre = region(filled, .8, 1, .4, .6)
    return np.array([fill, hole * 2, corners_top, corners_bottom, top_band, bottom_band, centre, mid_row, aspect,
                     top_centre, bottom_centre * 2])


# Nearest-centroid prototypes of the shape features, fitted on clean renders by
# ``_fit_shape_centroids`` (see tests): computed lazily once per process.
_CENTROIDS: Optional[Tuple[List[str], np.ndarray, np.ndarray]] = None


def _fit_shape_centroids(n: int = 600, seed: int = 987654) -> Tuple[List[str], np.ndarray, np.ndarray]:
    feats: Dict[str, List[np.ndarray]] = {k: [] for k in SHAPES}
    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = list(SHAPES)[rng.integers(len(SHAPES))]
        img = render(shape, list(COLOURS)[rng.integers(len(COLOURS))], list(SIZES)[rng.integers(len(SIZES))],
                     list(POSITIONS)[rng.integers(len(POSITIONS))], list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))],
                     (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)), int(rng.integers(-1, 2))))
        f = _features(_foreground(np.asarray(img, dtype=np.float64))[0])
        feats[shape].append(f)
    names = list(SHAPES)
    centroids = np.stack([np.mean(feats[k], axis=0) for k in names])
    allf = np.concatenate([np.stack(v) for v in feats.values()])
    scale = allf.std(axis=0) + 1e-3
    return names, centroids, scale


def _foreground(arr: np.ndarray) -> Tuple[np.ndarray, str]:
    """Foreground mask (pixels far from the background colour) and the background name."""
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg_rgb = np.median(border, axis=0)
    bg_name = min(BACKGROUNDS, key=lambda b: np.abs(np.array(BACKGROUNDS[b][0]) - bg_rgb).sum())
    dist = np.abs(arr - bg_rgb).sum(axis=-1)
    mask = dist > 120
    return mask, bg_name


def check_image(image) -> Dict[str, Optional[str]]:
    """Judge a picture from its pixels: ``{'colour', 'shape', 'background'}`` (``None``: no shape found)."""
    global _CENTROIDS
    arr = np.asarray(image.convert('RGB') if isinstance(image, Image.Image) else image, dtype=np.float64)
    mask, bg_name = _foreground(arr)
    if mask.sum() < 6:
        return {'colour': None, 'shape': None, 'background': bg_name}
    mask = _largest_component(mask)
    pixels = arr[mask]
    rgb = np.median(pixels, axis=0)
    colour = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c][0]) - rgb).sum())
    feats = _features(mask)
    shape = None
    if feats is not None:
        if _CENTROIDS is None:
            _CENTROIDS = _fit_shape_centroids()
        names, centroids, scale = _CENTROIDS
        shape = names[int(np.argmin((((centroids - feats) / scale) ** 2).sum(axis=1)))]
    return {'colour': colour, 'shape': shape, 'background': bg_name}
