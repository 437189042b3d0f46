"""Build ROS 2 message packages that have no PyPI wheel (tf2_msgs) into the .venv, the way
``rosidl_generate_interfaces`` would: the upstream rosidl generators (PyPI wheels in the .venv)
turn the ``.msg`` into C, type supports and Python, and the C/C++ compiler builds the libraries.

Run by scripts/setup with the .venv's Python. Installs, like a ROS package's install space:
``<venv>/lib/lib<pkg>__rosidl_*.so``, the Python package in site-packages, and the ``.msg``,
``.idl`` and type description ``.json`` in ``<venv>/share/<pkg>/msg/``. The result is the real
message type (DDS name ``tf2_msgs::msg::dds_::TFMessage_``, the upstream type hash), so a ROS
installation's tf2 and RViz2 read what the bridges publish.

    .venv/bin/python scripts/build_interfaces.py            # builds scripts/interfaces/*
    .venv/bin/python scripts/build_interfaces.py --check    # exit 0 if installed and current
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

HERE = pathlib.Path(__file__).resolve().parent
INTERFACES = HERE / "interfaces"
PREFIX = pathlib.Path(sys.prefix)
LIB = PREFIX / "lib"
SHARE = PREFIX / "share"
SITE = pathlib.Path(sysconfig.get_paths()["purelib"])
#: Message packages each built package depends on (their headers and libraries come from wheels).
DEPENDENCIES = {"tf2_msgs": ("geometry_msgs", "std_msgs", "builtin_interfaces")}
RUNTIME_LIBS = ("rosidl_runtime_c", "rcutils", "rosidl_typesupport_c")


def _sources_digest(package: str) -> str:
    digest = hashlib.sha256(pathlib.Path(__file__).read_bytes())
    for path in sorted((INTERFACES / package).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(INTERFACES).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _stamp(package: str) -> pathlib.Path:
    return SHARE / package / "built_from.sha256"


def is_current(package: str) -> bool:
    stamp = _stamp(package)
    libs = [LIB / f"lib{package}__rosidl_{kind}.so" for kind in ("generator_c", "typesupport_c", "generator_py")]
    return stamp.is_file() and stamp.read_text().strip() == _sources_digest(package) and all(p.is_file() for p in libs)


def _generate(package: str, idl_root: pathlib.Path, idls: list[str], out: pathlib.Path) -> None:
    """The upstream generators, called as rosidl_cli's ``rosidl generate`` calls them (its entry-point
    lookup refuses the wheels' duplicated metadata, so the extensions are instantiated here)."""
    os.environ.setdefault("AMENT_PREFIX_PATH", str(PREFIX))
    from rosidl_generator_c.cli import GenerateC
    from rosidl_generator_py.cli import GeneratePython
    from rosidl_typesupport_c.cli import GenerateCTypesupport
    from rosidl_typesupport_fastrtps_c.cli import GenerateFastRTPSCTypesupport
    from rosidl_typesupport_introspection_c.cli import GenerateIntrospectionCTypesupport

    files = [f"{idl_root}:{idl}" for idl in idls]
    generators = (
        GenerateC,
        GenerateFastRTPSCTypesupport,
        GenerateIntrospectionCTypesupport,
        GenerateCTypesupport,
        GeneratePython,
    )
    logging.getLogger("rosidl_cli").setLevel(logging.ERROR)  # the wheels' duplicated entry points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for generator in generators:
            generator(generator.__name__).generate(package, files, [str(SHARE)], out)


def _compile(sources: list[pathlib.Path], target: pathlib.Path, includes: list[pathlib.Path], libs: list[str]) -> None:
    cxx = any(s.suffix == ".cpp" for s in sources)
    compiler = os.environ.get("CXX", "g++") if cxx else os.environ.get("CC", "gcc")
    command = [
        compiler,
        "-shared",
        "-fPIC",
        "-O2",
        *(["-std=c++17"] if cxx else ["-std=c11"]),
        *(f"-I{i}" for i in includes),
        *map(str, sources),
        "-o",
        str(target),
        f"-L{LIB}",
        f"-Wl,-rpath,{LIB}",
        *(f"-l{lib}" for lib in libs),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"build_interfaces: compiling {target.name} failed:\n{result.stderr[-4000:]}")


def build(package: str) -> None:
    source = INTERFACES / package
    msgs = sorted(p.relative_to(source).as_posix() for p in (source / "msg").glob("*.msg"))
    if not msgs:
        raise SystemExit(f"build_interfaces: no .msg files in {source / 'msg'}")
    deps = DEPENDENCIES.get(package, ())
    with tempfile.TemporaryDirectory(prefix=f"build_{package}_") as tmp:
        work = pathlib.Path(tmp)
        from rosidl_adapter.msg import convert_msg_to_idl

        idls = []
        for msg in msgs:
            out_dir = work / "idl" / pathlib.Path(msg).parent
            out_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.redirect_stdout(io.StringIO()):
                idls.append(convert_msg_to_idl(source, package, pathlib.Path(msg), out_dir))
        idl_rel = [pathlib.Path(p).relative_to(work / "idl").as_posix() for p in idls]
        gen = work / "gen" / package  # headers are included as <package>/msg/...
        _generate(package, work / "idl", idl_rel, gen)

        includes = [work / "gen", PREFIX / "include", *sorted(p for p in (PREFIX / "include").iterdir() if p.is_dir())]
        includes += [pathlib.Path(sysconfig.get_paths()["include"])]
        try:
            import numpy

            includes.append(pathlib.Path(numpy.get_include()))
        except ImportError:
            pass
        msg_dir = gen / "msg"
        dep_libs = lambda kind: [f"{d}__rosidl_{kind}" for d in deps]  # noqa: E731
        gen_c = f"{package}__rosidl_generator_c"
        built = LIB
        steps = [
            (
                sorted(msg_dir.glob("detail/*__functions.c")) + sorted(msg_dir.glob("detail/*__description.c")),
                f"lib{gen_c}.so",
                [*dep_libs("generator_c"), *RUNTIME_LIBS],
            ),
            (
                sorted(msg_dir.glob("detail/*__type_support.c")),
                f"lib{package}__rosidl_typesupport_introspection_c.so",
                [
                    gen_c,
                    *dep_libs("typesupport_introspection_c"),
                    *dep_libs("generator_c"),
                    "rosidl_typesupport_introspection_c",
                    *RUNTIME_LIBS,
                ],
            ),
            (
                sorted(msg_dir.glob("detail/*__type_support_c.cpp")),
                f"lib{package}__rosidl_typesupport_fastrtps_c.so",
                [
                    gen_c,
                    *dep_libs("typesupport_fastrtps_c"),
                    *dep_libs("generator_c"),
                    "rosidl_typesupport_fastrtps_c",
                    "rosidl_typesupport_fastrtps_cpp",
                    "fastcdr",
                    "rmw",
                    "rosidl_dynamic_typesupport",
                    *RUNTIME_LIBS,
                ],
            ),
            (
                sorted(msg_dir.glob("*__type_support.cpp")),
                f"lib{package}__rosidl_typesupport_c.so",
                [gen_c, *dep_libs("typesupport_c"), "rosidl_typesupport_c", "rcpputils", *RUNTIME_LIBS],
            ),
            (
                sorted(msg_dir.glob("_*_s.c")),
                f"lib{package}__rosidl_generator_py.so",
                [
                    gen_c,
                    f"{package}__rosidl_typesupport_c",
                    *dep_libs("generator_py"),
                    *dep_libs("typesupport_c"),
                    *dep_libs("generator_c"),
                    *RUNTIME_LIBS,
                ],
            ),
        ]
        for sources, name, libs in steps:
            if not sources:
                raise SystemExit(f"build_interfaces: the generators wrote no sources for {name}")
            print(f"build_interfaces: {package}: {name}", flush=True)
            _compile(sources, built / name, includes, libs)

        python_package = SITE / package
        shutil.rmtree(python_package, ignore_errors=True)
        (python_package / "msg").mkdir(parents=True)
        (python_package / "__init__.py").write_text("")
        for py in msg_dir.glob("*.py"):
            shutil.copy2(py, python_package / "msg" / py.name)
        for support in ("typesupport_c", "typesupport_fastrtps_c", "typesupport_introspection_c"):
            entry = gen / f"_{package}_s.ep.rosidl_{support}.c"
            print(f"build_interfaces: {package}: {package}_s__rosidl_{support} (Python)", flush=True)
            _compile(
                [entry],
                python_package / f"{package}_s__rosidl_{support}.so",
                includes,
                [f"{package}__rosidl_generator_py", f"{package}__rosidl_{support}", gen_c, *RUNTIME_LIBS],
            )

        share = SHARE / package / "msg"
        shutil.rmtree(SHARE / package, ignore_errors=True)
        share.mkdir(parents=True)
        for msg in msgs:
            shutil.copy2(source / msg, share / pathlib.Path(msg).name)
        for idl in idls:
            shutil.copy2(idl, share / pathlib.Path(idl).name)
        for description in msg_dir.glob("*.json"):
            shutil.copy2(description, share / description.name)
        index = SHARE / "ament_index" / "resource_index" / "packages"
        index.mkdir(parents=True, exist_ok=True)
        (index / package).write_text("")
        _stamp(package).write_text(_sources_digest(package) + "\n")
    print(f"build_interfaces: {package} installed into {PREFIX}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build message packages without a PyPI wheel into this Python's prefix."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 unless every package is built and current")
    parser.add_argument("--force", action="store_true", help="rebuild even when current")
    args = parser.parse_args(argv)
    packages = sorted(p.name for p in INTERFACES.iterdir() if (p / "msg").is_dir())
    stale = [p for p in packages if args.force or not is_current(p)]
    if args.check:
        for package in stale:
            print(f"build_interfaces: {package} is not built or not current; run scripts/setup", file=sys.stderr)
        return 1 if stale else 0
    for package in stale:
        build(package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
