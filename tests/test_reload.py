from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgelambda.reload import classify, is_relevant, watched_paths
from edgelambda.routing import FunctionSpec
from tests.fakes import function_spec


def _functions(tmp_path: Path) -> dict[str, FunctionSpec]:
    functions = {}
    for name in ("a", "b"):
        code_dir = tmp_path / "functions" / name
        code_dir.mkdir(parents=True)
        functions[name] = replace(function_spec(), name=name, image=None, code_dir=code_dir)
    return functions


def test_classify_maps_paths_to_the_routing_file_and_functions(tmp_path: Path) -> None:
    functions = _functions(tmp_path)
    routing = tmp_path / "routing.yaml"

    change = classify(
        [str(routing), str(tmp_path / "functions" / "a" / "app.py"), str(tmp_path / "other.txt")],
        routing_path=routing,
        functions=functions,
    )

    assert change.is_routing_changed
    assert change.functions == frozenset({"a"})


def test_classify_ignores_unrelated_files(tmp_path: Path) -> None:
    change = classify(
        [str(tmp_path / "README.md")],
        routing_path=tmp_path / "routing.yaml",
        functions=_functions(tmp_path),
    )

    assert not change.is_routing_changed
    assert change.functions == frozenset()


def test_watched_paths_are_the_routing_directory_and_code_directories(tmp_path: Path) -> None:
    functions = _functions(tmp_path)

    paths = watched_paths(tmp_path / "routing.yaml", functions)

    assert paths == sorted([tmp_path, tmp_path / "functions" / "a", tmp_path / "functions" / "b"])


def test_an_existing_routing_file_is_watched_itself_too(tmp_path: Path) -> None:
    functions = _functions(tmp_path)
    (tmp_path / "routing.yaml").write_text("functions: {}\n")

    paths = watched_paths(tmp_path / "routing.yaml", functions)

    assert paths[-1] == tmp_path / "routing.yaml"
    assert tmp_path in paths


def test_busy_files_beside_the_routing_file_are_not_relevant(tmp_path: Path) -> None:
    functions = _functions(tmp_path)
    routing = tmp_path / "routing.yaml"

    def relevant(path: Path) -> bool:
        return is_relevant(str(path), routing_path=routing, functions=functions)

    assert relevant(routing)
    assert relevant(tmp_path / "functions" / "a" / "app.py")
    assert not relevant(tmp_path / "data" / "events.sqlite3-wal")
    assert not relevant(tmp_path / "gateway.log")


def test_a_change_in_a_layer_is_a_change_of_the_functions_using_it(tmp_path: Path) -> None:
    functions = _functions(tmp_path)
    common, tools = tmp_path / "layers" / "common", tmp_path / "layers" / "tools.zip"
    common.mkdir(parents=True)
    tools.write_bytes(b"PK")
    functions["a"] = replace(functions["a"], layers=(common, tools))
    routing = tmp_path / "routing.yaml"

    def touched(path: Path) -> frozenset[str]:
        return classify([str(path)], routing_path=routing, functions=functions).functions

    assert touched(common / "python" / "m.py") == frozenset({"a"})
    assert touched(tools) == frozenset({"a"})
    assert touched(tmp_path / "layers" / "other.zip") == frozenset()
    assert not is_relevant(
        str(tmp_path / "layers" / "notes.txt"), routing_path=routing, functions=functions
    )
    assert watched_paths(routing, functions) == sorted(
        [
            tmp_path,
            tmp_path / "functions" / "a",
            tmp_path / "functions" / "b",
            tmp_path / "layers",
            common,
        ]
    )
