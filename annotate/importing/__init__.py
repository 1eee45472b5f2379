"""Importing datasets into a project: `import_file(project=..., file=..., filename=..., format=...)`.

Formats (see docs/imports.md): `qa`, `prompts`, `beavertails`, `pku-saferlhf`, each as .jsonl, .json
(an array), .csv or .parquet, optionally gzip-compressed. The import is streamed, deduplicated by
content hash within the project, and all or nothing: any problem raises ImportRejected with the
first IMPORT_MAX_ERRORS problems and stores nothing.
"""

from annotate.importing.errors import ImportIssue, ImportRejected
from annotate.importing.formats import SUPPORTED_FORMATS
from annotate.importing.readers import SUPPORTED_EXTENSIONS
from annotate.importing.service import ImportResult, import_file

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_FORMATS",
    "ImportIssue",
    "ImportRejected",
    "ImportResult",
    "import_file",
]
