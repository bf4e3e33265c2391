"""Online features: new declarations + the entity-state snapshot -> the same features as batch.

INTERFACE (implementation in progress; signatures are the contract other packages code against):

- ``EntityState.load(directory) -> EntityState``: the snapshot written by ``features build`` into
  ``DIR/entity_state/``; ``state.cutoff`` (UTC timestamp), ``state.manifest`` (FeatureManifest),
  ``state.fingerprint`` (str; the model bundle's metadata["entity_state_fingerprint"] must match).
- ``compute_online_features(declarations, state) -> pandas.DataFrame``: one row per input
  declaration (canonical contract frame, no outcomes, in input order) with ``declaration_id``,
  ``declared_at``, the ``REASON_CONTEXT`` columns and every manifest feature column; feed
  ``state.manifest.matrix(frame)`` to the model. Unknown codes/entities get priors, never errors;
  ``frame.attrs["warnings"]`` lists per-row warnings as (row_index, message) for unknown codes.
"""
