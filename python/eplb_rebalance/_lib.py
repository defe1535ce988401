"""ctypes bindings of include/eplb/eplb.h and eplb_mpi.h, and where the library is found."""

import ctypes
import ctypes.util
import os
import sys

EPLB_OK = 0
EPLB_NOT_READY = 1
EPLB_ERR_INPUT = 2
EPLB_ERR_CORRUPT = 3
EPLB_ERR_COMM = 4
EPLB_ERR_TIMEOUT = 5
EPLB_ERR_UNAVAILABLE = 6
EPLB_ERR_USAGE = 64
EPLB_ERR_INTERNAL = 70

EPLB_ALLOW_DROPPING_EXPERTS = 1
EPLB_BACKEND_MPI = 0
EPLB_BACKEND_NCCL = 1

# The header version these bindings follow (EPLB_VERSION): the major must match.
HEADER_VERSION = 200


class EplbError(RuntimeError):
    """A call of libeplb failed. `status` is the eplb_status, `message` its text (which names
    the rank); every rank raises it together where the library agreed on a refusal."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class CommOptions(ctypes.Structure):
    _fields_ = [("timeout_ms", ctypes.c_int64), ("transport_staging_bytes", ctypes.c_size_t)]


class PlanStats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in (
        "num_layers", "experts_moved", "min_experts_required", "busiest_sender_experts",
        "messages", "rows_unchanged", "rows_local", "rows_empty")]


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("num_rows", ctypes.c_int64),
                ("row_bytes", ctypes.c_int64), ("tag", ctypes.c_uint64)]


class RearrangeOptions(ctypes.Structure):
    _fields_ = [("staging_bytes", ctypes.c_size_t), ("profile", ctypes.c_int),
                ("verify", ctypes.c_int)]


class Report(ctypes.Structure):
    _fields_ = [("bytes_sent", ctypes.c_int64), ("bytes_received", ctypes.c_int64),
                ("rows_rewritten", ctypes.c_int64), ("staging_bytes", ctypes.c_int64),
                ("transport_staging_bytes", ctypes.c_int64),
                ("layers_per_exchange", ctypes.c_int64), ("seconds", ctypes.c_double)]

    def as_dict(self):
        return {name: getattr(self, name) for name, _ in self._fields_}


_P = ctypes.c_void_p
_SIGNATURES = {
    "eplb_version": (ctypes.c_int, []),
    "eplb_build_info": (ctypes.c_char_p, []),
    "eplb_last_error": (ctypes.c_char_p, []),
    "eplb_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "eplb_comm_options_init": (None, [ctypes.POINTER(CommOptions)]),
    "eplb_comm_from_nccl": (ctypes.c_int, [_P, _P, ctypes.POINTER(CommOptions), ctypes.POINTER(_P)]),
    "eplb_nccl_unique_id": (ctypes.c_int, [_P, ctypes.c_size_t]),
    "eplb_comm_from_unique_id": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                                ctypes.c_int, ctypes.POINTER(CommOptions),
                                                ctypes.POINTER(_P)]),
    "eplb_comm_rank": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int),
                                      ctypes.POINTER(ctypes.c_int)]),
    "eplb_comm_backend": (ctypes.c_char_p, [_P]),
    "eplb_comm_agree": (ctypes.c_int, [_P, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                       ctypes.POINTER(ctypes.c_int32), ctypes.c_int32,
                                       ctypes.POINTER(ctypes.c_int32)]),
    "eplb_comm_destroy": (ctypes.c_int, [_P]),
    "eplb_plan_create": (ctypes.c_int, [_P, ctypes.c_int32, ctypes.c_int32, _P, ctypes.c_int32,
                                        ctypes.c_int32, ctypes.c_int32, _P, ctypes.c_uint32,
                                        ctypes.POINTER(_P)]),
    "eplb_plan_stats_get": (ctypes.c_int, [_P, ctypes.POINTER(PlanStats)]),
    "eplb_plan_destroy": (ctypes.c_int, [_P]),
    "eplb_rearrange_options_init": (None, [ctypes.POINTER(RearrangeOptions)]),
    "eplb_rebalancer_create": (ctypes.c_int, [_P, _P, ctypes.POINTER(Tensor), ctypes.c_int32,
                                              ctypes.POINTER(RearrangeOptions),
                                              ctypes.POINTER(_P)]),
    "eplb_rearrange": (ctypes.c_int, [_P, ctypes.POINTER(Report)]),
    "eplb_layer_start": (ctypes.c_int, [_P, ctypes.c_int32, _P]),
    "eplb_layer_test": (ctypes.c_int, [_P, ctypes.c_int32]),
    "eplb_layer_finish": (ctypes.c_int, [_P, ctypes.c_int32, _P, ctypes.POINTER(Report)]),
    "eplb_rebalancer_destroy": (ctypes.c_int, [_P]),
}
_MPI_SIGNATURES = {
    "eplb_comm_from_mpi_world": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(CommOptions),
                                                ctypes.POINTER(_P)]),
    "eplb_mpi_finalize": (ctypes.c_int, []),
}


def _candidates(name, env):
    """Where lib<name>.so may be, in order."""
    here = os.path.dirname(os.path.abspath(__file__))
    soname = "lib%s.so" % name
    given = os.environ.get(env)
    if given:
        yield os.path.join(given, soname) if os.path.isdir(given) else given
        return
    # EPLB_LIBRARY names libeplb.so; libeplb_mpi.so lies beside it.
    other = os.environ.get("EPLB_LIBRARY")
    if other:
        yield os.path.join(other if os.path.isdir(other) else os.path.dirname(other), soname)
    yield os.path.join(here, "lib", soname)
    yield soname + ".0"  # the dynamic linker's search (ldconfig, LD_LIBRARY_PATH)
    found = ctypes.util.find_library(name)
    if found:
        yield found
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        yield os.path.join(prefix, "lib", soname)


def _load(name, env, signatures):
    tried = []
    for path in _candidates(name, env):
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        for fn, (restype, argtypes) in signatures.items():
            f = getattr(lib, fn)
            f.restype = restype
            f.argtypes = argtypes
        if lib.eplb_version() // 10000 != HEADER_VERSION // 10000:
            raise EplbError(EPLB_ERR_UNAVAILABLE,
                            "%s is version %d, these bindings follow %d" %
                            (path, lib.eplb_version(), HEADER_VERSION))
        return lib
    raise EplbError(EPLB_ERR_UNAVAILABLE,
                    "lib%s.so not found; set %s to its path. Tried: %s" %
                    (name, env, "; ".join(tried)))


_libs = {}


def library(mpi=False):
    """libeplb (or libeplb_mpi, which adds communicators made from MPI), loaded once."""
    key = "eplb_mpi" if mpi else "eplb"
    if key not in _libs:
        if mpi:
            _libs[key] = _load("eplb_mpi", "EPLB_MPI_LIBRARY", {**_SIGNATURES, **_MPI_SIGNATURES})
        else:
            _libs[key] = _load("eplb", "EPLB_LIBRARY", _SIGNATURES)
    return _libs[key]


def check(lib, status):
    """Raises EplbError for a failed status; returns EPLB_OK or EPLB_NOT_READY."""
    if status in (EPLB_OK, EPLB_NOT_READY):
        return status
    message = lib.eplb_last_error().decode(errors="replace")
    name = lib.eplb_status_name(status).decode()
    raise EplbError(status, "%s: %s" % (name, message))
