import pytest

from breastgpt.registry import Registry, RegistryError


def test_register_get_and_names_keep_registration_order():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def b():
        return 2

    reg.add("a", 1)
    assert reg.names() == ("b", "a")
    assert reg.get("b") is b and reg.get("a") == 1
    assert "a" in reg and "c" not in reg and len(reg) == 2 and list(reg) == ["b", "a"]


def test_duplicate_name_is_refused_and_keeps_the_first():
    reg: Registry = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(RegistryError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(RegistryError):
        reg.register("a")(lambda: None)
    assert reg.get("a") == 1


def test_unknown_name_lists_the_known_ones():
    reg: Registry = Registry("widget")
    reg.add("alpha", 1)
    reg.add("beta", 2)
    with pytest.raises(RegistryError, match=r"unknown widget 'gamma'; known: alpha, beta") as info:
        reg.get("gamma")
    assert isinstance(info.value, KeyError)
    assert reg.remove("alpha") == 1 and reg.names() == ("beta",)
    with pytest.raises(RegistryError, match="known: beta"):
        reg.remove("alpha")


def test_empty_name_is_refused():
    with pytest.raises(RegistryError, match="non-empty"):
        Registry("widget").add("", 1)
