"""What the mesh keeps on disk that several layers share: key files.

The sans-IO core parses and formats the bytes; the file I/O (modes, exclusive
creation, fsync) lives here. A node's receipt log is the node's own
(:mod:`mesh.node.receipt_log`); safetensors files are the runtime's
(:mod:`mesh.runtime.model_files`).
"""
