"""Package metadata from settings.ini (nbdev 2 template, without pkg_resources)."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]
reqs = [r for r in Path(__file__).parent.joinpath("requirements.txt").read_text().splitlines()
        if r.strip() and not r.startswith("#")]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    author=cfg["author"],
    license="Apache Software License 2.0",
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["knife_repro", "knife_repro.*"]),
    include_package_data=True,
    install_requires=reqs,
    zip_safe=False,
)
