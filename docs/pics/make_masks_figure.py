"""Draws docs/pics/attention_masks_350m.png: the four sparse masks of the 350M config (dark = may attend)."""
import os

import numpy as np
from PIL import Image, ImageDraw

from rudolph.model import MODELS, get_col_mask, get_conv_mask, get_row_mask


def main():
    p = MODELS['350M']['model_params']
    args = (p['l_text_seq_length'], p['image_tokens_per_dim'], p['r_text_seq_length'])
    masks = [('row', get_row_mask(*args, is_bool_mask=True)),
             ('column', get_col_mask(*args, is_bool_mask=True)),
             (f"conv {p['kernel_size']}", get_conv_mask(*args, kernel=p['kernel_size'], is_bool_mask=True)),
             (f"last conv {p['last_kernel_size']}", get_conv_mask(*args, kernel=p['last_kernel_size'], is_bool_mask=True))]
    size, pad, top = masks[0][1].shape[0], 8, 18
    canvas = Image.new('RGB', (4 * (size + pad) + pad, size + top + pad), 'white')
    draw = ImageDraw.Draw(canvas)
    for i, (name, mask) in enumerate(masks):
        x = pad + i * (size + pad)
        canvas.paste(Image.fromarray(np.where(mask.numpy(), 30, 235).astype(np.uint8)).convert('RGB'), (x, top))
        draw.text((x, 3), f'{name} mask (350M, S={size})', fill='black')
    canvas.save(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'attention_masks_350m.png'))


if __name__ == '__main__':
    main()
