"""Errors that describe a problem with what the user gave (a config, a data folder, a workdir),
not a bug: `jsr.main` prints them as one `error: ...` message, without a traceback."""


class UserError(ValueError):
  """Bad input: the message names the file, key or shape at fault and what to do."""
