"""Time to build the four attention masks of every published config (target: well under 0.1 s)."""
import time

import torch

from rudolph.model import MODELS, get_col_mask, get_conv_mask, get_row_mask


def main():
    torch.set_num_threads(2)
    print('| config | S | four masks (ms) |')
    print('|---|---|---|')
    for name, config in MODELS.items():
        p = config['model_params']
        args = (p['l_text_seq_length'], p['image_tokens_per_dim'], p['r_text_seq_length'])
        best = float('inf')
        for _ in range(5):
            start = time.perf_counter()
            get_row_mask(*args, is_bool_mask=True)
            get_col_mask(*args, is_bool_mask=True)
            get_conv_mask(*args, kernel=p['kernel_size'], is_bool_mask=True)
            get_conv_mask(*args, kernel=p['last_kernel_size'], is_bool_mask=True)
            best = min(best, time.perf_counter() - start)
        print(f'| {name} | {sum(args[:1]) + args[1] ** 2 + args[2]} | {best * 1e3:.1f} |')


if __name__ == '__main__':
    main()
