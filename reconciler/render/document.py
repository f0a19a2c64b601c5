"""One YAML document that is not a Kubernetes object (the eksctl ClusterConfig), loaded the
way manifests are: with the guarded loader and the same strict ``${VAR}`` substitution.

Substitution runs on the parsed-and-dumped document, as for manifests, so a ``${...}`` in
a comment is not a reference and every error can name the field that holds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler.render import yaml_safe
from reconciler.render.errors import ManifestError
from reconciler.render.options import Limits
from reconciler.render.substitute import SubstitutionError, find_field, substitute_text


def load(path: Path, variables: Mapping[str, str], limits: Limits | None = None) -> Any:
    """The document in ``path`` with its variables expanded; ManifestError naming file (and field)."""
    limits = limits or Limits()
    file = str(path)
    try:
        if path.stat().st_size > limits.max_file_bytes:
            raise ManifestError(file, None, f"larger than {limits.max_file_bytes} bytes")
        raw = _one(
            yaml_safe.load_all(path.read_text(), max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes), file
        )
        text = yaml_safe.dump(raw)
        new, _ = substitute_text(text, variables)
        return _one(yaml_safe.load_all(new, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes), file)
    except OSError as e:
        raise ManifestError(file, None, f"cannot read it: {e.strerror or e}") from None
    except SubstitutionError as e:
        field = find_field(raw, e.expression)
        raise ManifestError(file, None, e.why + (f" (field {field})" if field else "")) from None
    except (yaml.YAMLError, yaml_safe.YAMLLimitError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise ManifestError(file, None, f"{at}{getattr(e, 'problem', None) or e}") from None


def _one(docs: list[Any], file: str) -> Any:
    docs = [d for d in docs if d is not None]
    if len(docs) != 1:
        raise ManifestError(file, None, f"expected exactly one YAML document, found {len(docs)}")
    return docs[0]
