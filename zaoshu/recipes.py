"""Recipes: the YAML that says what data to make (axes, styles, prompts, rules), validated before any request.

A recipe is checked whole when it is loaded: types, empty or duplicated axis values, stray whitespace,
exclusions that name unknown axes or values, styles without user templates, missing few-shot files and
template variables that nothing defines. Every error names the file and the key path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta as jinja_meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zaoshu.errors import RecipeError
from zaoshu.templates import RecipeEnvironment

RESERVED = {"style", "round"}
#: names every template may use besides the axes (see `generator.plan`).
TEMPLATE_NAMES = {
    "style",
    "instruction",
    "examples",
    "example",
    "injection",
    "max_chars",
    "min_chars",
    "round",
    "system",
}


class AxisValue(str):
    """An axis value: renders as its name, and exposes the attributes given in the recipe (`recipient.tone`)."""

    attrs: dict[str, Any]

    def __new__(cls, name: str, attrs: dict[str, Any] | None = None) -> AxisValue:
        value = super().__new__(cls, name)
        value.attrs = dict(attrs or {})
        return value

    def __getattr__(self, key: str) -> Any:
        try:
            return self.attrs[key]
        except KeyError:
            raise AttributeError(key) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileRef(_Strict):
    """Values read from a file next to the recipe: text (one a line), JSON/JSONL or CSV (a column)."""

    file: str
    column: str | None = None
    limit: int | None = Field(default=None, ge=1)


class ModelSettings(_Strict):
    """Sampling parameters, sent as real API parameters (the seed put temperature inside a message)."""

    temperature: float | None = Field(default=1.0, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=512, ge=1)


class Style(_Strict):
    instruction: str = ""
    examples: list[str] | FileRef = Field(default_factory=list)
    n_examples: int = Field(default=1, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    min_chars: int | None = Field(default=None, ge=0)
    user_templates: list[str] = Field(default_factory=list)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    system: str = ""
    generation_system: str = ""
    axes: dict[str, list[str | dict[str, Any]] | FileRef]
    exclude: list[dict[str, str | list[str]]] = Field(default_factory=list)
    styles: dict[str, Style]
    injections: list[str] = Field(default_factory=lambda: [""])
    prompt: str
    rounds: int = Field(default=1, ge=1)
    seed: int = 0
    model: ModelSettings = Field(default_factory=ModelSettings)
    vars: dict[str, str | int | float] = Field(default_factory=dict)
    eval_inputs: list[str] = Field(default_factory=list)
    clean: dict[str, Any] = Field(default_factory=dict)
    #: the rubric and prompts of `zaoshu judge` / `zaoshu eval` (validated by zaoshu.judging.spec)
    judge: dict[str, Any] = Field(default_factory=dict)

    # Filled by `load_recipe`: resolved values, where the recipe came from.
    path: Path | None = Field(default=None, exclude=True)
    values: dict[str, list[AxisValue]] = Field(default_factory=dict, exclude=True)
    examples: dict[str, list[str]] = Field(default_factory=dict, exclude=True)

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @field_validator("injections")
    @classmethod
    def _injections_not_empty(cls, v: list[str]) -> list[str]:
        return v or [""]

    @property
    def axis_names(self) -> list[str]:
        return list(self.axes)

    def input_files(self) -> list[Path]:
        """The files this recipe reads: itself, its file axes and its example files."""
        if self.path is None:
            return []
        base = self.path.parent
        refs = [ref for ref in self.axes.values() if isinstance(ref, FileRef)]
        refs += [s.examples for s in self.styles.values() if isinstance(s.examples, FileRef)]
        return [self.path, *(base / ref.file for ref in refs)]

    def templates(self) -> dict[str, str]:
        """Every Jinja2 template of the recipe by key path (for validation and rendering)."""
        out = {"prompt": self.prompt}
        for name, style in self.styles.items():
            out[f"styles.{name}.instruction"] = style.instruction
            for i, t in enumerate(style.user_templates):
                out[f"styles.{name}.user_templates[{i}]"] = t
        return out


_env = RecipeEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


def template_env() -> SandboxedEnvironment:
    """The one sandboxed Jinja2 environment for recipe templates: a missing variable is an error, not ''."""
    return _env


def _fail(path: Path, key: str, message: str) -> RecipeError:
    return RecipeError(f"{key}: {message}", path=path)


def _read_values(
    ref: FileRef, base: Path, recipe_path: Path, key: str, *, allow_outside: bool = False
) -> list[Any]:
    import polars as pl  # imported here: 28 MB and 0.7 s that recipes without CSV/JSON axes never need

    file = (base / ref.file).resolve()
    if not allow_outside and not file.is_relative_to(base.resolve()):
        # A recipe is shared like a script: its values are sent to a provider, so one that reads
        # /etc/hostname or ../../secrets.txt would leak local files. The user who means it says so.
        raise _fail(
            recipe_path,
            key,
            f"file {ref.file!r} is outside the recipe's folder ({file}); its lines would be sent to the "
            "provider. Move it next to the recipe, or pass --allow-outside-files if you mean it",
        )
    if not file.is_file():
        raise _fail(recipe_path, key, f"file {ref.file!r} not found (looked in {file})")
    suffix = file.suffix.lower()
    try:
        if suffix in (".txt", ".md", ""):
            values: list[Any] = [
                line.rstrip("\r\n") for line in file.read_text(encoding="utf-8").splitlines()
            ]
            values = [v for v in values if v.strip()]
        elif suffix in (".yaml", ".yml"):
            values = yaml.safe_load(file.read_text(encoding="utf-8"))
        else:
            if suffix == ".csv":
                frame = pl.read_csv(file, infer_schema=False)
            elif suffix == ".jsonl":
                frame = pl.read_ndjson(file)
            elif suffix == ".json":
                frame = pl.read_json(file)
            else:
                raise _fail(
                    recipe_path,
                    key,
                    f"unsupported file type {suffix!r}: use .txt, .yaml, .jsonl, .json or .csv",
                )
            if ref.column is None:
                raise _fail(recipe_path, key, f"{ref.file} is a table: say which column with `column:`")
            if ref.column not in frame.columns:
                raise _fail(
                    recipe_path,
                    key,
                    f"column {ref.column!r} not in {ref.file} (columns: {', '.join(frame.columns)})",
                )
            values = [v for v in frame[ref.column].cast(pl.Utf8).to_list() if v is not None and v.strip()]
    except RecipeError:
        raise
    except Exception as e:
        raise _fail(recipe_path, key, f"cannot read {ref.file}: {e}") from None
    if not isinstance(values, list):
        raise _fail(recipe_path, key, f"{ref.file} must hold a list of values")
    return values[: ref.limit] if ref.limit else values


def _axis_values(raw: list[Any], recipe_path: Path, key: str) -> list[AxisValue]:
    values: list[AxisValue] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if isinstance(item, dict):
            if "name" not in item or not isinstance(item["name"], str):
                raise _fail(recipe_path, where, "a value given as a mapping needs a string `name`")
            name, attrs = item["name"], {k: v for k, v in item.items() if k != "name"}
        elif isinstance(item, (str, int, float)):
            name, attrs = str(item), {}
        else:
            raise _fail(
                recipe_path, where, f"expected a string or a mapping with `name`, got {type(item).__name__}"
            )
        if not name.strip():
            raise _fail(recipe_path, where, "empty value")
        if name != name.strip():
            raise _fail(
                recipe_path,
                where,
                f"value {name!r} has leading or trailing whitespace; it would leak into training inputs. "
                f"Write {name.strip()!r}",
            )
        if name in seen:
            raise _fail(recipe_path, where, f"duplicate value {name!r}")
        seen.add(name)
        values.append(AxisValue(name, attrs))
    if not values:
        raise _fail(recipe_path, key, "axis has no values")
    return values


def _check_templates(recipe: Recipe, path: Path) -> None:
    known = set(recipe.axes) | TEMPLATE_NAMES | set(recipe.vars)
    for key, source in recipe.templates().items():
        try:
            ast = _env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise _fail(
                path, key, f"template syntax error at template line {e.lineno}: {e.message}"
            ) from None
        unknown = sorted(jinja_meta.find_undeclared_variables(ast) - known)
        if unknown:
            raise _fail(
                path,
                key,
                f"unknown template variable(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            )
        _check_attributes(recipe, path, key, ast)
        _check_examples(recipe, path, key, ast)


def _check_examples(recipe: Recipe, path: Path, key: str, ast: jinja2.nodes.Template) -> None:
    """`{{ example }}` / `{{ examples }}` needs examples to draw from in every style it renders for;
    otherwise each prompt would silently say nothing where the example should be."""
    used = jinja_meta.find_undeclared_variables(ast) & {"example", "examples"}
    if not used:
        return
    styles = [key.split(".")[1]] if key.startswith("styles.") else list(recipe.styles)
    for name in styles:
        style, pool = recipe.styles[name], recipe.examples.get(name, [])
        if not pool:
            raise _fail(
                path,
                f"styles.{name}.examples",
                f"{key} uses {{{{ {sorted(used)[0]} }}}} but style {name!r} has no examples; "
                "give it `examples:` or drop the variable",
            )
        if style.n_examples < 1:
            raise _fail(
                path,
                f"styles.{name}.n_examples",
                f"{key} uses {{{{ {sorted(used)[0]} }}}} but n_examples is 0",
            )


def _check_attributes(recipe: Recipe, path: Path, key: str, ast: jinja2.nodes.Template) -> None:
    """`{{ recipient.tone }}` needs every value of the axis to carry `tone`: say which value lacks it now,
    rather than failing on the first task that draws it."""
    for node in ast.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        target = node.node
        if not isinstance(target, jinja2.nodes.Name) or target.name not in recipe.values:
            continue
        if isinstance(node, jinja2.nodes.Getattr):
            attr = node.attr
        elif isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str):
            attr = node.arg.value
        else:
            continue
        if hasattr(str, attr):  # a string method such as `scene.strip()`
            continue
        for i, value in enumerate(recipe.values[target.name]):
            if attr not in value.attrs:
                raise _fail(
                    path,
                    f"axes.{target.name}[{i}]",
                    f"value {str(value)!r} has no attribute {attr!r}, which {key} uses "
                    f"({{{{ {target.name}.{attr} }}}}); give every value of the axis a {attr!r}",
                )


def _check_excludes(recipe: Recipe, path: Path) -> None:
    known = {name: {str(v) for v in values} for name, values in recipe.values.items()}
    known["style"] = set(recipe.styles)
    for i, rule in enumerate(recipe.exclude):
        if not rule:
            raise _fail(path, f"exclude[{i}]", "empty exclusion would skip every task")
        for axis, wanted in rule.items():
            if axis not in known:
                raise _fail(path, f"exclude[{i}].{axis}", f"unknown axis; axes are {', '.join(known)}")
            for value in [wanted] if isinstance(wanted, str) else wanted:
                if value not in known[axis]:
                    raise _fail(path, f"exclude[{i}].{axis}", f"{value!r} is not a value of axis {axis!r}")


def _pydantic_message(err: ValidationError) -> str:
    lines = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("list[", "function-", "FileRef")))
        lines.append(f"{loc or '<top>'}: {e['msg']}")
    return "; ".join(lines)


def parse_recipe(data: Any, path: Path, *, allow_outside_files: bool = False) -> Recipe:
    """Validate a recipe mapping already read from YAML; `path` anchors relative files and messages.

    `{file: …}` values must lie in the recipe's folder unless `allow_outside_files`."""
    if not isinstance(data, dict):
        raise RecipeError("expected a mapping at the top of the recipe", path=path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_pydantic_message(e), path=path) from None
    recipe.path = path
    base = path.parent
    if not recipe.axes:
        raise _fail(path, "axes", "a recipe needs at least one axis")
    for name, raw in recipe.axes.items():
        if name in RESERVED or name in TEMPLATE_NAMES:
            raise _fail(
                path, f"axes.{name}", f"{name!r} is a reserved template name; choose another axis name"
            )
        if name in recipe.vars:
            raise _fail(path, f"axes.{name}", f"{name!r} is both an axis and a var")
        if isinstance(raw, FileRef):
            raw = _read_values(raw, base, path, f"axes.{name}", allow_outside=allow_outside_files)
        recipe.values[name] = _axis_values(raw, path, f"axes.{name}")
    if not recipe.styles:
        raise _fail(path, "styles", "a recipe needs at least one style")
    for name, style in recipe.styles.items():
        key = f"styles.{name}"
        if not style.user_templates:
            raise _fail(path, f"{key}.user_templates", "a style needs at least one user-turn template")
        examples = style.examples
        if isinstance(examples, FileRef):
            examples = [
                str(v)
                for v in _read_values(
                    examples, base, path, f"{key}.examples", allow_outside=allow_outside_files
                )
            ]
        if style.n_examples and style.n_examples > len(examples) and examples:
            raise _fail(
                path,
                f"{key}.n_examples",
                f"asks for {style.n_examples} examples but the pool has {len(examples)}",
            )
        if style.min_chars and style.max_chars and style.min_chars > style.max_chars:
            raise _fail(path, f"{key}.min_chars", "min_chars is larger than max_chars")
        recipe.examples[name] = list(examples)
    _check_excludes(recipe, path)
    _check_templates(recipe, path)
    return recipe


def load_recipe(path: str | Path, *, allow_outside_files: bool = False) -> Recipe:
    """Read and validate a recipe file. Raises RecipeError naming the file and key on any problem.

    `{file: …}` values outside the recipe's folder are refused unless `allow_outside_files`."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RecipeError("recipe is not UTF-8", path=path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RecipeError(f"not valid YAML: {getattr(e, 'problem', e)}", path=path, line=line) from None
    return parse_recipe(data, path, allow_outside_files=allow_outside_files)


def is_excluded(recipe: Recipe, axes: dict[str, str]) -> bool:
    """True when every key of some `exclude` rule matches (a rule value may be one value or a list).

    Planning skips such combinations and the cleaning report draws them grey: one definition for both.
    """
    for rule in recipe.exclude:
        if all(axes.get(k) in ([v] if isinstance(v, str) else v) for k, v in rule.items()):
            return True
    return False


def find_recipe(name: str | None, near: Iterable[Path] = ()) -> Path | None:
    """A recipe given as a path, or `<name>.yaml` (or .yml) looked up beside the `near` paths (each and up to
    three folders up, and their prompts/), then in ./prompts and the zaoshu checkout's prompts/."""
    if not name:
        return None
    if Path(name).is_file():
        return Path(name)
    places: list[Path] = []
    for p in near:  # the data's own neighbourhood first: it is the most specific
        for parent in [p, *list(p.parents)[:3]]:
            places += [parent, parent / "prompts"]
    places += [Path("prompts"), Path(__file__).resolve().parents[1] / "prompts"]
    for place in places:
        for suffix in (".yaml", ".yml"):
            if (place / f"{name}{suffix}").is_file():
                return place / f"{name}{suffix}"
    return None
