"""The engine's exceptions, each carrying a message a person can act on."""


class ModelError(Exception):
    """Base class for everything the engine refuses to do."""


class KnowledgeError(ModelError):
    """A knowledge-base entry is missing or invalid (its file and field are named)."""


class BundleError(ModelError):
    """The trained model bundle is missing, corrupt, foreign or stale; the message says what to run."""


class SampleError(ModelError):
    """A training or evaluation directory is unusable."""
