"""The facts the C++ driver restates (csrc/driver/contract_facts.hpp) equal
kim_gnn.driver_facts, the Python side of the same contract (docs/contract.md)."""

import inspect
import os
import re

from kim_gnn import contract, driver_facts, entry

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "csrc", "driver", "contract_facts.hpp")
CONSTANT = re.compile(r"^\s*(?:static\s+|inline\s+)*constexpr\s+([^=;]*?)\s*\b(k\w+)\s*(\[\s*\])?\s*=\s*([^;]+);",
                      re.M)


def _literal(text: str):
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    number = re.sub(r"(?<=[0-9.])[fFlLuU]+$", "", text)
    try:
        return int(number)
    except ValueError:
        return float(number)


def header_constants(path: str = HEADER) -> dict:
    """``{kName: value}`` of every ``constexpr <type> kName = <literal>;`` line."""
    assert os.path.isfile(path), (
        f"{path} is missing: the driver takes the contract's facts from it (docs/contract.md)")
    text = re.sub(r"//[^\n]*", "", open(path).read())
    return {m.group(2): _literal(m.group(4)) for m in CONSTANT.finditer(text)}


def test_header_parser_reads_the_declared_form(tmp_path):
    sample = tmp_path / "facts.hpp"
    sample.write_text('constexpr double kDummyParticleCoordinate = 999.0;  // far away\n'
                      'constexpr int kFusionStrategyDepth = 3;\n'
                      'constexpr char const* kDriverName = "KimGnn__MD_000000000000_000";\n'
                      'inline constexpr char kEnergyUnit[] = "eV";\n')
    assert header_constants(str(sample)) == {"kDummyParticleCoordinate": 999.0, "kFusionStrategyDepth": 3,
                                             "kDriverName": "KimGnn__MD_000000000000_000", "kEnergyUnit": "eV"}


def test_the_driver_header_states_the_python_facts():
    constants = header_constants()
    missing = [name for name in driver_facts.CPP_REQUIRED if name not in constants]
    assert not missing, f"contract_facts.hpp lacks {missing}"
    unknown = sorted(set(constants) - set(driver_facts.CPP_FACTS))
    assert not unknown, f"contract_facts.hpp states {unknown}, which kim_gnn.driver_facts.CPP_FACTS does not list"
    for name, value in constants.items():
        assert value == driver_facts.CPP_FACTS[name], (name, value, driver_facts.CPP_FACTS[name])


def test_the_facts_are_the_contracts():
    assert driver_facts.CPP_FACTS["kDummyParticleCoordinate"] == contract.DUMMY_PARTICLE_POSITION[0] == 999.0
    assert set(contract.DUMMY_PARTICLE_POSITION) == {999.0}
    assert driver_facts.CPP_FACTS["kFusionStrategyDepth"] == contract.FUSION_STRATEGY[0][1] == 3
    assert driver_facts.CPP_FACTS["kFusionStrategyBehavior"] == contract.FUSION_STRATEGY[0][0] == "DYNAMIC"
    spec = contract.StagedModelSpec(["Si"], 3.0, 4)
    assert spec.num_inputs == 4 + driver_facts.INPUTS_BESIDES_EDGE_LISTS
    assert len(contract.input_names(4)) == spec.num_inputs
    text = contract.render_param_file(spec)
    values = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    # the driver reads PARAM_FILE_VALUES values; the descriptor line after them is read by neither parser
    assert values[2] == driver_facts.PREPROCESSING and values[driver_facts.PARAM_FILE_VALUES:] == ["None"]
    assert values[driver_facts.PARAM_FILE_VALUES - 1] == str(spec.num_inputs)
    source = inspect.getsource(entry)
    assert f"self.{driver_facts.SPEC_ATTRIBUTE} =" in source
