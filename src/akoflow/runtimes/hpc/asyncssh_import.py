"""asyncssh, imported once without cryptography's DSA deprecation warning.

cryptography 51 deprecates DSA and warns when a module merely names its classes; asyncssh
names them at import (to support ``ssh-dss`` keys), so every command that loads the HPC
runtime printed that warning to the user. It says nothing about their setup, so it is
silenced here, for this one import; a DSA key actually used still warns.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "DSA is deprecated", CryptographyDeprecationWarning)
    import asyncssh

__all__ = ["asyncssh"]
