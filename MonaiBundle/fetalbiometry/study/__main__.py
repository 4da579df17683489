"""``python -m fetalbiometry.study`` and ``torchrun --nproc_per_node=N -m fetalbiometry.study``."""

import sys

from fetalbiometry.study.command import main

sys.exit(main())
