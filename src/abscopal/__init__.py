"""abscopal: link per-lesion dose to per-lesion response and find abscopal responses.

For research use only; not for clinical decision-making.
"""

import logging

__version__ = "0.1.0"
DISCLAIMER = "For research use only; not for clinical decision-making."

logging.getLogger("abscopal").addHandler(logging.NullHandler())

__all__ = ["DISCLAIMER", "__version__"]
