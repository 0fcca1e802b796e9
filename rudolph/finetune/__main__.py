"""``python -m rudolph.finetune ...`` (also ``accelerate launch -m rudolph.finetune ...``)."""
from rudolph.finetune.cli import main

if __name__ == '__main__':
    raise SystemExit(main())
