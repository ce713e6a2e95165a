# Makefile - the two commands a user needs on a fresh machine:
#   make run    install missing packages, build, run the quickstart example
#   make test   install missing packages, build, run every suite (ctest)
#   make install   build, then install the swit binary, libswit.so/.a,
#               the headers, libswit.pc, the CMake package, the docs, the
#               editor files (share/swit: LuaLS definitions, luacheck preset)
#               under PREFIX (default /usr/local), staged under DESTDIR
# Variables: BUILD (build directory), SANITIZE (e.g. address,undefined),
# TYPE (CMake build type), PREFIX, DESTDIR. `make bench` prints the
# benchmark figures.
BUILD ?= build
TYPE ?= RelWithDebInfo
SANITIZE ?=
PREFIX ?= /usr/local
DESTDIR ?=
JOBS := $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test bench deps build install

run: build
	$(BUILD)/swit run examples/quickstart/swit.yaml --exit-when-idle

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	$(BUILD)/bench/bench_pipeline
	$(BUILD)/bench/bench_reload

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(TYPE) -DSWIT_SANITIZE=$(SANITIZE) \
	  -DCMAKE_INSTALL_PREFIX="$(PREFIX)" >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
