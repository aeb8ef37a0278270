"""The one exception type for bad user input: its message names the file and the problem."""


class InputError(ValueError):
    """Bad input (config, sheet, DICOM). The CLI prints the message on one line and exits 2."""
