"""Every size, count and time cap of the protocol, with the reason beside it.

Pure constants: no imports beyond the standard library, so both the sans-IO core
and the services can share them.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

# Frames: py-libp2p 0.8.1's Yamux reads give up past ~6.5 MB (read_exactly stops
# after 100 partial 64 KB reads), so one frame stays well under that; larger
# messages are split into several frames.
MAX_FRAME_BYTES = 4 * MiB
# A whole message reassembled from frames (tensors for a batch of inputs).
MAX_MESSAGE_BYTES = 64 * MiB

# Tensors carried in tasks and results.
MAX_TENSOR_ELEMENTS = 16 * 1024 * 1024
MAX_TENSOR_BYTES = 64 * MiB
MAX_TENSOR_DIMS = 8
MAX_TENSORS_PER_MESSAGE = 64

# Strings and collections inside messages.
MAX_STRING_BYTES = 64 * KiB
MAX_LIST_ITEMS = 4096
MAX_MAP_ITEMS = 256
MAX_TEXTS_PER_TASK = 256

# Tasks: a client signs created/expiry; a node refuses a window longer than this
# (bounds its replay cache) and clocks that disagree by more than the skew.
MAX_TASK_WINDOW_MS = 10 * 60 * 1000
MAX_CLOCK_SKEW_MS = 30 * 1000

# Capacity records live this long at most; refreshed well before.
MAX_CAPACITY_TTL_MS = 10 * 60 * 1000
