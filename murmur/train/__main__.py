"""``python -m murmur.train --config ... [key=value ...]``: the same as ``murmur train`` (for torchrun)."""

import sys

from murmur.cli import main

if __name__ == "__main__":
    sys.argv = ["murmur", "train", *sys.argv[1:]]
    main()
