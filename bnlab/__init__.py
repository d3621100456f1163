"""bnlab: paired BatchNorm / no-BatchNorm training runs that measure what BN does.

See README.md for usage and docs/science.md for the
definitions of every quantity bnlab measures.
"""

from bnlab import resolvers  # noqa: F401  (the configs' ${linear_lr:...} and ${abspath:...})

__version__ = "0.1.0"
