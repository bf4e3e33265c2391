"""The feature pipeline: prepare, entity histories, build, snapshot, online, manifest."""
