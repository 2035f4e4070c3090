#!/usr/bin/env python3
"""layering.py SRC: checks that src/ is the stack of layers src/CMakeLists.txt lists (MNIST_LAYERS,
lowest first). Every source file lives in a layer's folder, and every `#include "..."` names a
header as "layer/file.h" that exists (or that protoc makes from the layer's file.proto), in the
includer's own layer or one below it. Prints one line
per violation and exits 1; exits 0 when there is none."""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SOURCES = {".h", ".cpp", ".cu"}


def layer_order(cmake: pathlib.Path) -> list:
    """The words of the set(MNIST_LAYERS ...) block, comments stripped, in order."""
    block = re.search(r"set\(MNIST_LAYERS\n(.*?)\n\)", cmake.read_text(), re.S)
    if not block:
        sys.exit(f"{cmake}: no set(MNIST_LAYERS ...) block")
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def violations(src: pathlib.Path):
    layers = layer_order(src / "CMakeLists.txt")
    rank = {name: i for i, name in enumerate(layers)}
    folders = {p.name for p in src.iterdir() if p.is_dir()}
    for name in sorted(set(layers) - folders):
        yield f"src/{name}/: listed in MNIST_LAYERS but missing"
    for name in sorted(folders - set(layers)):
        yield f"src/{name}/: a folder that is not a layer (add it to MNIST_LAYERS in src/CMakeLists.txt)"
    for path in sorted(p for p in src.rglob("*") if p.suffix in SOURCES):
        rel = path.relative_to(src)
        if len(rel.parts) != 2 or rel.parts[0] not in rank:
            yield f"src/{rel}: not in a layer's folder"
            continue
        own = rel.parts[0]
        for target in INCLUDE.findall(path.read_text()):
            parts = pathlib.PurePosixPath(target).parts
            if len(parts) != 2 or parts[0] not in rank:
                yield f'src/{rel}: #include "{target}" does not name a layer\'s header ("layer/file.h")'
            elif not ((src / target).is_file() or (target.endswith(".pb.h") and (src / (target[:-5] + ".proto")).is_file())):
                yield f'src/{rel}: #include "{target}": no such file'
            elif rank[parts[0]] > rank[own]:
                yield f'src/{rel}: #include "{target}" reaches up from layer {own} to layer {parts[0]}'


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: layering.py SRC_DIR")
    found = list(violations(pathlib.Path(sys.argv[1])))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
