"""The errors mier_tf raises on purpose, in one place so that every caller catches the same class."""


class CheckpointError(RuntimeError):
  """A checkpoint (run, replay or host state) is missing, incomplete, corrupt or belongs to
  another configuration. The message starts with the path of the file (or folder) at fault.
  """
