"""The feature pipeline: prepare, history (kernel), family (interface), build, snapshot, online, manifest."""
