"""zaoshu (造数): recipes in, clean supervised fine-tuning data out, handed to XTuner.

The public Python API; the `zaoshu` command is a thin layer over it.
"""

from zaoshu.errors import RecipeError, RecordError, ZaoshuError
from zaoshu.generator.plan import Plan, Task, plan
from zaoshu.recipes import Recipe, load_recipe
from zaoshu.records import read_records, write_records

__version__ = "0.1.0"

__all__ = [
    "Plan",
    "Recipe",
    "RecipeError",
    "RecordError",
    "Task",
    "ZaoshuError",
    "load_recipe",
    "plan",
    "read_records",
    "write_records",
]
