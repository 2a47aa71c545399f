"""The model runtime: zoo, weights and identity, executor with dynamic batching.

Modules (import them directly; this package imports nothing, so that reading
manifests with :mod:`mesh.runtime.zoo` does not pull in torch):

- :mod:`~mesh.runtime.manifest`, :mod:`~mesh.runtime.zoo`: zoo entries (no torch);
- :mod:`~mesh.runtime.weights`: architectures by file path, weights, model_root;
- :mod:`~mesh.runtime.registry`: :func:`load_model`, :class:`LoadedModel`;
- :mod:`~mesh.runtime.executor`: :class:`Executor` (trio): dynamic batching per
  model, and for generation :mod:`~mesh.runtime.continuous` (tasks join and leave
  the running decode batch step by step); :mod:`~mesh.runtime.job`: :class:`Execution`;
- :mod:`~mesh.runtime.detokenize`: text deltas from growing token lists (streaming);
- :mod:`~mesh.runtime.chat`: chat templates (jinja2 only; the gateway uses it);
- :mod:`~mesh.runtime.model_files`: safetensors files' model roots (no torch);
- :mod:`~mesh.runtime.classify`, :mod:`~mesh.runtime.embed`,
  :mod:`~mesh.runtime.generate`: one handler per model kind;
- :mod:`~mesh.runtime.sampling`, :mod:`~mesh.runtime.commitment`: the seeded
  sampler, activation commitments and :func:`verify_generation`;
- :mod:`~mesh.runtime.device`, :mod:`~mesh.runtime.ops`: runtime classes and
  batch-invariant kernels.
"""
