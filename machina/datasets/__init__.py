"""Episodes to and from other tools' formats: Minari datasets and pandas DataFrames.

The converters import ``minari`` and ``pandas`` on first use (``pip install
"machina[datasets]"``).
"""

from machina.datasets._episodes import env_to_policy_acs, policy_to_env_acs
from machina.datasets.dataframe import from_dataframe, to_dataframe
from machina.datasets.minari_io import from_minari, to_minari

__all__ = [
    "env_to_policy_acs",
    "from_dataframe",
    "from_minari",
    "policy_to_env_acs",
    "to_dataframe",
    "to_minari",
]
