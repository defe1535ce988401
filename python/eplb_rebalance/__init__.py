"""eplb_rebalance: move MoE expert weights between GPUs (or CPU processes) inside a running
server, through libeplb: a drop-in for vLLM's rearrange_expert_weights_inplace, and a
per-layer asynchronous Rebalancer. Pure Python over ctypes."""

from ._lib import EplbError, library
from .rebalance import Rebalancer, rearrange_expert_weights_inplace, shutdown

__all__ = ["EplbError", "Rebalancer", "rearrange_expert_weights_inplace", "shutdown", "library"]
__version__ = "0.2.0"
