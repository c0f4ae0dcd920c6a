# Thin wrapper around CMake presets. See README.md.
JOBS ?= $(shell nproc)
PYTEST ?= /usr/bin/python3 -m pytest

.PHONY: all setup build release asan test unit e2e demo bench lint format clean

all: build

setup:
	@bash scripts/setup.sh

build/CMakeCache.txt:
	cmake --preset debug >/dev/null

build: build/CMakeCache.txt
	cmake --build build -j $(JOBS)

build-release/CMakeCache.txt:
	cmake --preset release >/dev/null

release: build-release/CMakeCache.txt
	cmake --build build-release -j $(JOBS)

build-asan/CMakeCache.txt:
	cmake --preset asan >/dev/null

unit: build
	cd build && ctest --output-on-failure -j $(JOBS)

e2e: build
	TOLLGATE_BIN=$(CURDIR)/build/tollgate $(PYTEST) -q tests/e2e

test: setup
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) e2e

asan: setup build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)
	TOLLGATE_BIN=$(CURDIR)/build-asan/tollgate TOLLGATE_ASAN=1 $(PYTEST) -q tests/e2e

demo: setup release
	./build-release/tollgate demo

bench: setup release
	bash bench/run.sh all

lint:
	@bash scripts/lint.sh

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]')

clean:
	rm -rf build build-asan build-release
