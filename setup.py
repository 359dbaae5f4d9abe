"""The package list (everything else is in pyproject.toml): the library ``seds``, plus two folders of the
repository mapped into the wheel by ``[tool.setuptools.package-dir]`` — ``configs/`` as ``seds.configs`` (presets
by name) and the app ``demo/`` as ``seds_app`` (``seds-app``). pyproject's ``packages.find`` cannot list mapped
folders, hence this file."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["seds", "seds.*"]) + ["seds.configs", "seds.configs.model", "seds_app"])
