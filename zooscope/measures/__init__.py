"""Pure math on arrays: every measure is registered by name with its metadata.

>>> import zooscope as zs
>>> "linear_cka" in zs.measures.available()
True
"""

from zooscope.measures._base import MEASURES, Inv, MeasureMeta, TransferMeta, available, get
from zooscope.measures.bayes import *  # noqa: F403
from zooscope.measures.cca import *  # noqa: F403
from zooscope.measures.cka import *  # noqa: F403
from zooscope.measures.diffusion import *  # noqa: F403
from zooscope.measures.geodesic import *  # noqa: F403
from zooscope.measures.gramform import *  # noqa: F403
from zooscope.measures.kernels import *  # noqa: F403
from zooscope.measures.mahalanobis import *  # noqa: F403
from zooscope.measures.matching import *  # noqa: F403
from zooscope.measures.minibatch import *  # noqa: F403
from zooscope.measures.shape import *  # noqa: F403
from zooscope.measures.sketch import *  # noqa: F403
from zooscope.measures.transfer import *  # noqa: F403
from zooscope.measures.transfer_fast import *  # noqa: F403
from zooscope.measures.transfer_lda import *  # noqa: F403
from zooscope.measures.transfer_probe import *  # noqa: F403
from zooscope.measures.transform import *  # noqa: F403

__all__ = ["MEASURES", "Inv", "MeasureMeta", "TransferMeta", "available", "get"]
