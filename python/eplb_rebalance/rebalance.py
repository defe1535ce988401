"""vLLM's rearrange_expert_weights_inplace over libeplb, and a per-layer asynchronous API.

Every refusal is agreed on by every rank before any byte moves, so that a problem on one
rank raises EplbError on all of them instead of leaving the others waiting.
"""

import ctypes
import hashlib

from . import _lib
from ._lib import EplbError

try:  # torch is optional: numpy arrays and plain sequences work without it
    import torch
except ImportError:  # pragma: no cover - exercised where torch is absent
    torch = None


# ----------------------------------------------------------------------- tensors -----

def _is_torch(t):
    return torch is not None and isinstance(t, torch.Tensor)


def _describe(t):
    """(pointer, rows, row_bytes, tag, device, problem) of a torch tensor or numpy array.
    device is the CUDA index, or -1 for host memory; problem is None or a sentence."""
    if _is_torch(t):
        rows = int(t.shape[0]) if t.dim() > 0 else 0
        row_bytes = (t.numel() // rows) * t.element_size() if rows else 0
        ident = "%s%s" % (t.dtype, tuple(t.shape[1:]))
        device = t.device.index if t.is_cuda else -1
        if t.is_cuda and device is None:
            device = torch.cuda.current_device()
        contiguous = t.is_contiguous()
        pointer = t.data_ptr()
    elif hasattr(t, "__array_interface__") and hasattr(t, "ctypes"):
        rows = int(t.shape[0]) if t.ndim > 0 else 0
        row_bytes = (t.size // rows) * t.itemsize if rows else 0
        ident = "%s%s" % (t.dtype.str, tuple(t.shape[1:]))
        device = -1
        contiguous = bool(t.flags["C_CONTIGUOUS"]) and bool(t.flags["WRITEABLE"])
        pointer = t.ctypes.data
    else:
        return 0, 0, 0, 0, -1, "is a %s, not a torch tensor or numpy array" % type(t).__name__
    tag = int.from_bytes(hashlib.blake2b(ident.encode(), digest_size=8).digest(), "little")
    problem = None
    if not contiguous:
        problem = "is not contiguous (or not writeable): rows must lie back to back"
    elif rows == 0:
        problem = "has no rows"
    return pointer, rows, row_bytes, tag, device, problem


def _layers(expert_weights):
    return [list(layer) for layer in expert_weights]


def _check_tensors(layers):
    """Local problems of this rank's tensors (sentences), and the described tensors."""
    problems, described = [], []
    if not layers or not layers[0]:
        return ["expert_weights has no layers or no tensors"], described
    count = len(layers[0])
    for l, layer in enumerate(layers):
        if len(layer) != count:
            problems.append("layer %d has %d weight tensors, layer 0 has %d" %
                            (l, len(layer), count))
            continue
        for k, t in enumerate(layer):
            d = _describe(t)
            described.append(d)
            if d[5] is not None:
                problems.append("layer %d, tensor %d %s" % (l, k, d[5]))
    if not problems:
        first = described[:count]
        for i, d in enumerate(described):
            l, k = divmod(i, count)
            if d[3] != first[k][3]:
                problems.append("layer %d, tensor %d: dtype or per-row shape differs from "
                                "layer 0's tensor %d" % (l, k, k))
            if d[1] != first[0][1]:
                problems.append("layer %d, tensor %d: %d rows, layer 0's tensor 0 has %d" %
                                (l, k, d[1], first[0][1]))
            if d[4] != first[0][4]:
                problems.append("layer %d, tensor %d is on %s, layer 0's tensor 0 on %s" %
                                (l, k, _where(d[4]), _where(first[0][4])))
    return problems, described


def _where(device):
    return "the host" if device < 0 else "cuda:%d" % device


def _int64_array(indices, name):
    """A map ([layers][physical slots], torch tensor, numpy array or nested lists) as a
    ctypes int64 array, with its shape."""
    if hasattr(indices, "detach"):
        indices = indices.detach().cpu()
    rows = indices.tolist() if hasattr(indices, "tolist") else [list(r) for r in indices]
    if not rows or not isinstance(rows[0], list):
        raise EplbError(_lib.EPLB_ERR_USAGE, "%s must be 2-D: [layers][physical slots]" % name)
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise EplbError(_lib.EPLB_ERR_USAGE, "%s: every layer must have %d slots" % (name, width))
    flat = [int(v) for r in rows for v in r]
    return (ctypes.c_int64 * len(flat))(*flat), len(rows), width


# ------------------------------------------------------------------ communicators -----

_comms = {}  # cached per EP group: a communicator costs a second or more to make


def _stream_pointer(stream):
    if stream is None:
        if torch is not None and torch.cuda.is_available():
            return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        return ctypes.c_void_p(None)
    return ctypes.c_void_p(getattr(stream, "cuda_stream", stream))


def _options(timeout):
    o = _lib.CommOptions()
    o.timeout_ms = int(timeout * 1000)
    o.transport_staging_bytes = 0
    return o


def _communicator(ep_group, device, timeout):
    """(lib, comm handle) for the EP group: the MPI world (None), vLLM's PyNcclCommunicator
    (an object with `comm`), or a torch.distributed ProcessGroup."""
    out = ctypes.c_void_p()
    if ep_group is None:
        lib = _lib.library(mpi=True)
        backend = _lib.EPLB_BACKEND_MPI if device < 0 else _lib.EPLB_BACKEND_NCCL
        key = ("mpi", backend)
        if key not in _comms:
            _lib.check(lib, lib.eplb_comm_from_mpi_world(backend, ctypes.byref(_options(timeout)),
                                                         ctypes.byref(out)))
            _comms[key] = (lib, out)
        return _comms[key]
    key = id(ep_group)
    if key in _comms:
        return _comms[key]
    lib = _lib.library()
    if device < 0:
        raise EplbError(_lib.EPLB_ERR_USAGE,
                        "CPU tensors need ep_group=None under mpirun (the MPI world is the EP group)")
    raw = getattr(ep_group, "comm", None)
    if raw is not None and not _is_process_group(ep_group):
        # vLLM's PyNcclCommunicator: its ncclComm_t, lent to us.
        pointer = raw.value if isinstance(raw, ctypes.c_void_p) else int(raw)
        _lib.check(lib, lib.eplb_comm_from_nccl(ctypes.c_void_p(pointer), _stream_pointer(None),
                                                ctypes.byref(_options(timeout)), ctypes.byref(out)))
    else:
        import torch.distributed as dist
        rank, size = dist.get_rank(ep_group), dist.get_world_size(ep_group)
        uid = ctypes.create_string_buffer(128)
        if rank == 0:
            _lib.check(lib, lib.eplb_nccl_unique_id(uid, 128))
        box = [bytes(uid.raw)]
        dist.broadcast_object_list(box, src=dist.get_global_rank(ep_group, 0)
                                   if hasattr(dist, "get_global_rank") else 0, group=ep_group)
        uid = ctypes.create_string_buffer(box[0], 128)
        _lib.check(lib, lib.eplb_comm_from_unique_id(uid, 128, rank, size, device,
                                                     ctypes.byref(_options(timeout)),
                                                     ctypes.byref(out)))
    _comms[key] = (lib, out)
    return _comms[key]


def _is_process_group(group):
    if torch is None:
        return False
    try:
        import torch.distributed as dist
        return isinstance(group, dist.ProcessGroup)
    except (ImportError, AttributeError):
        return False


def _forget(comm):
    """Drops a failed (aborted) communicator from the cache; its handle is released."""
    for key, (lib, cached) in list(_comms.items()):
        if cached is comm:
            del _comms[key]
            lib.eplb_comm_destroy(cached)  # local after a failure


def shutdown():
    """Collective: destroys every cached communicator, then finalizes MPI if the library
    initialized it. Call it at the end of a job (every rank), not between rebalances."""
    for lib, comm in list(_comms.values()):
        lib.eplb_comm_destroy(comm)
    _comms.clear()
    if "eplb_mpi" in _lib._libs:
        _lib._libs["eplb_mpi"].eplb_mpi_finalize()


# ---------------------------------------------------------------------- the API -----

class Rebalancer:
    """One rebalance of this rank's expert weights from `old` to `new` maps.

    Collective to create (every rank of the EP group, same maps): checks every rank's
    tensors and maps and agrees on them before anything moves. Then either `rearrange()`
    (every layer, blocking), or per layer `start(layer, stream)`, `test(layer)`,
    `finish(layer, stream)` so the server keeps serving while a layer moves.
    """

    def __init__(self, old_global_expert_indices, new_global_expert_indices, expert_weights,
                 ep_group=None, rank_mapping=None, *, is_profile=False, timeout=600.0,
                 staging_bytes=0, allow_dropping_experts=False, verify=True):
        self._handle = None
        self._failed = False
        layers = _layers(expert_weights)
        problems, described = _check_tensors(layers)
        device = described[0][4] if described else -1
        self._lib, self._comm = _communicator(ep_group, device, timeout)
        lib = self._lib
        plan = ctypes.c_void_p()
        try:
            old, num_layers, old_width = _int64_array(old_global_expert_indices, "old indices")
            new, new_layers, new_width = _int64_array(new_global_expert_indices, "new indices")
            rows = described[0][1] if described else 1
            if new_layers != num_layers or len(layers) != num_layers:
                problems.append("%d layers in the old map, %d in the new, %d of weights" %
                                (num_layers, new_layers, len(layers)))
            elif old_width % rows or new_width % rows:
                problems.append("maps of %d and %d slots do not divide into ranks of %d rows" %
                                (old_width, new_width, rows))
            if not problems:
                mapping = None
                if rank_mapping is not None:
                    n = old_width // rows
                    mapping = (ctypes.c_int32 * n)(*[int(rank_mapping.get(r, -1)) for r in range(n)])
                flags = _lib.EPLB_ALLOW_DROPPING_EXPERTS if allow_dropping_experts else 0
                _lib.check(lib, lib.eplb_plan_create(old, old_width // rows, rows, new,
                                                     new_width // rows, rows, num_layers,
                                                     mapping, flags, ctypes.byref(plan)))
        except EplbError as e:
            problems.append(e.message)
        # Every rank's local problems, agreed on before anything else is collective.
        all_ok, bad = ctypes.c_int(), (ctypes.c_int32 * 64)()
        num_bad = ctypes.c_int32()
        _lib.check(lib, lib.eplb_comm_agree(self._comm, int(not problems), ctypes.byref(all_ok),
                                            bad, 64, ctypes.byref(num_bad)))
        if not all_ok.value:
            lib.eplb_plan_destroy(plan)
            if problems:
                raise EplbError(_lib.EPLB_ERR_INPUT, "; ".join(problems))
            ranks = ", ".join(str(bad[i]) for i in range(min(num_bad.value, 64)))
            raise EplbError(_lib.EPLB_ERR_INPUT,
                            "rank(s) %s refused their tensors or maps (their message says why); "
                            "nothing has moved" % ranks)
        count = len(layers[0])
        tensors = (_lib.Tensor * len(described))()
        for i, d in enumerate(described):
            tensors[i] = _lib.Tensor(d[0], d[1], d[2], d[3])
        options = _lib.RearrangeOptions(staging_bytes, 1 if is_profile else 0, 1 if verify else 0)
        handle = ctypes.c_void_p()
        try:
            _lib.check(lib, lib.eplb_rebalancer_create(self._comm, plan, tensors, count,
                                                       ctypes.byref(options), ctypes.byref(handle)))
        finally:
            lib.eplb_plan_destroy(plan)
        self._handle = handle
        self._keep = layers  # the tensors must outlive the rebalancer

    def _call(self, status):
        try:
            return _lib.check(self._lib, status)
        except EplbError as e:
            if e.status in (_lib.EPLB_ERR_COMM, _lib.EPLB_ERR_TIMEOUT):
                self._failed = True  # the communicator is aborted: close() drops it
            raise

    def rearrange(self):
        """Collective: every layer in place; returns this rank's report (a dict)."""
        report = _lib.Report()
        self._call(self._lib.eplb_rearrange(self._handle, ctypes.byref(report)))
        return report.as_dict()

    def start(self, layer, stream=None):
        """Collective: starts moving `layer` after the work on `stream` (default: the current
        CUDA stream); returns at once."""
        self._call(self._lib.eplb_layer_start(self._handle, layer, _stream_pointer(stream)))

    def test(self, layer):
        """Local: True once the started layer has landed; never blocks."""
        return self._call(self._lib.eplb_layer_test(self._handle, layer)) == _lib.EPLB_OK

    def finish(self, layer, stream=None):
        """Local: waits (within the timeout) for the layer, then copies it into place on
        `stream` (enqueued); vLLM's move_from_buffer. Returns this rank's report."""
        report = _lib.Report()
        self._call(self._lib.eplb_layer_finish(self._handle, layer, _stream_pointer(stream),
                                               ctypes.byref(report)))
        return report.as_dict()

    def close(self):
        if self._handle is not None:
            self._lib.eplb_rebalancer_destroy(self._handle)
            self._handle = None
        if self._failed:
            _forget(self._comm)  # the next call makes a new communicator
            self._failed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def rearrange_expert_weights_inplace(old_global_expert_indices, new_global_expert_indices,
                                     expert_weights, ep_group=None, is_profile=False,
                                     rank_mapping=None, **options):
    """vLLM's signature and semantics: moves every MoE layer's expert rows in place so that
    physical slot p holds logical expert new[layer][p]. `expert_weights[layer][k]` is a
    tensor [num_local_physical_experts, ...]. With is_profile, allocates and agrees but moves
    nothing. Options: timeout (s), staging_bytes, allow_dropping_experts, verify (True: every
    changed row checked against its source's checksum before any is placed)."""
    with Rebalancer(old_global_expert_indices, new_global_expert_indices, expert_weights,
                    ep_group, rank_mapping, is_profile=is_profile, **options) as r:
        return r.rearrange()
