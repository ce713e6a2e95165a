# Makefile - the two commands a user needs on a fresh machine:
#   make run    install missing packages, build, run the quickstart example
#   make test   install missing packages, build, run every suite (ctest)
#   make install   build, then install the swit binary, libswit.so/.a,
#               the headers, libswit.pc, the CMake package, the docs, the
#               editor files (share/swit: LuaLS definitions, luacheck preset)
#               under PREFIX (default /usr/local), staged under DESTDIR
# Variables: BUILD (build directory), SANITIZE (e.g. address,undefined),
# TYPE (CMake build type), TESTS and EXCLUDE (ctest -R and -E regexes:
# only those tests, all but those), PREFIX, DESTDIR. `make bench` prints the
# benchmark figures. `make examples` runs the example of each broker
# (examples/kafka, rabbitmq, nats, jetstream) against the servers the
# suite starts (ctest -R '^example\.'). `make fuzz` builds the libFuzzer harnesses with clang
# in FUZZ_BUILD and runs each on its seed corpus for FUZZ_SECONDS
# (scripts/fuzz.sh).
BUILD ?= build
TYPE ?= RelWithDebInfo
SANITIZE ?=
PREFIX ?= /usr/local
DESTDIR ?=
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
JOBS := $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test bench deps build install fuzz examples

run: build
	$(BUILD)/swit run examples/quickstart/swit.yaml --exit-when-idle

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) $(if $(TESTS),-R '$(TESTS)') \
	  $(if $(EXCLUDE),-E '$(EXCLUDE)')

examples: build
	cd $(BUILD) && ctest --output-on-failure -R '^example\.'

bench: build
	$(BUILD)/bench/bench_pipeline
	$(BUILD)/bench/bench_reload

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWIT_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(TYPE) -DSWIT_SANITIZE=$(SANITIZE) \
	  -DCMAKE_INSTALL_PREFIX="$(PREFIX)" >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
