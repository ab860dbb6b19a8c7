# psmem - build, test, bench, install.  `make help` lists the targets.
.DEFAULT_GOAL := all
SHELL := /bin/bash

BUILD   ?= build
SAN     ?=
PREFIX  ?= /usr/local
CC      ?= cc
# libpsmem's own packages; libsodium is for lib/launch/ only (psrun and the
# tests link it, applications do not).
LIB_PKGS := liburcu-memb liburcu-cds numa jemalloc liblz4
PKGS    := $(LIB_PKGS) libsodium
DEB_PKGS := build-essential liburcu-dev libnuma-dev libjemalloc-dev libcmocka-dev pkg-config numactl zlib1g-dev procps \
            qemu-system-x86 cpio gnuplot-nox libsodium-dev openmpi-bin \
            python3-dev python3-numpy python3-pytest python3-torch python3-sklearn liblz4-dev

# pkg-config is asked lazily so that `make deps` works before it exists.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Under a sanitizer, private allocations go through the sanitizer's malloc
# (lib/base/world.c) and jemalloc is not linked: its fork handlers overflow
# TSan's deadlock detector, and the sanitizers cannot see inside it.
LINK_PKGS  = $(if $(SAN),$(filter-out jemalloc,$(LIB_PKGS)),$(LIB_PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(LINK_PKGS) 2>/dev/null)
SODIUM_LIBS = $(shell pkg-config --libs libsodium 2>/dev/null)
CMOCKA_CFLAGS = $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   = $(shell pkg-config --libs cmocka 2>/dev/null)

# lib/ is layered (docs/DESIGN.md "Layers"): base < core < persist < net <
# launch.  Private headers are found by name in their layer's folder.
LAYERS  := base core persist net launch
LIB_INC := -Ilib $(addprefix -Ilib/,$(LAYERS))
LIB_HDR := $(wildcard lib/*.h lib/*/*.h)

OPT     ?= -O2
CFLAGS  := -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -fPIC \
           $(LIB_INC) $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lz -lm -pthread
# psrun's bridge, rendezvous and authentication (lib/launch/)
LAUNCH_LIBS := $(SODIUM_LIBS)
ifneq ($(SAN),)
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer -DPS_SANITIZE=1
LDFLAGS += -fsanitize=$(SAN)
endif
ifeq ($(SAN),thread)
# gcc warns that TSan does not model atomic_thread_fence; the seqlock's data
# accesses are atomics anyway, so no data race can hide behind a fence.
CFLAGS  += -Wno-error=tsan -Wno-tsan
endif

# libpsmem: every layer but launch/, which is libpslaunch.a (psrun, tests)
LIB_LAYERS:= $(filter-out launch,$(LAYERS))
LIB_SRC   := $(wildcard $(LIB_LAYERS:%=lib/%/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
# The same objects with the PSMEM_DEBUG_* test hooks compiled in
# (PS_TEST_HOOKS): libpsmem_test.a, linked by the test binaries only.
TEST_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/test-hooks/%.o)
LAUNCH_SRC:= $(wildcard lib/launch/*.c)
LAUNCH_OBJ:= $(LAUNCH_SRC:%.c=$(BUILD)/%.o)
# bin/psrun_*.c are parts of psrun, not programs of their own
BIN_SRC   := $(filter-out bin/psrun_%.c,$(wildcard bin/*.c))
BINS      := $(BIN_SRC:bin/%.c=$(BUILD)/bin/%)
PSRUN_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard bin/psrun_*.c))
APP_MAINS := $(filter-out apps/common_%.c,$(wildcard apps/*.c))
APP_COMMON:= $(wildcard apps/common_*.c)
APPS      := $(APP_MAINS:apps/%.c=$(BUILD)/apps/%)
TEST_SRC  := $(wildcard tests/test_*.c)
TESTS     := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_COMMON := $(wildcard tests/common_*.c)
# bench/ucx_rpc.c needs UCX: built by its own rule below, never required.
BENCH_SRC := $(filter-out bench/ucx_rpc.c,$(wildcard bench/*.c))
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# The frame parser's fuzz target needs clang's libFuzzer; without it the
# fuzz test skips (tests/test_fuzz.c says so).
FUZZ_CC   ?= $(shell command -v clang 2>/dev/null)
FUZZ      := $(if $(FUZZ_CC),$(BUILD)/fuzz/fuzz_frame)
STATIC    := $(BUILD)/lib/libpsmem.a
SHARED    := $(BUILD)/lib/libpsmem.so
# The README's example (docs/example.c), linked as a user's program would be:
# against build/lib's shared library (tests/test_psrun.c runs it).
EXAMPLE   := $(BUILD)/docs/example
LAUNCH    := $(BUILD)/lib/libpslaunch.a
TEST_LIB  := $(BUILD)/lib/libpsmem_test.a

# Python binding (python/): a C extension module built with the interpreter
# that imports numpy (pyenv's python3 on PATH may not see Debian's packages;
# /usr/bin/python3 does).  PYTHON=... overrides; none found: skipped.
# (asked once per make run: simply expanded)
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 /usr/bin/python3; do $$p -c 'import numpy' 2>/dev/null && { command -v $$p; break; }; done)
endif
PY_CONF := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys, sysconfig; print(sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"), "%d.%d" % sys.version_info[:2])' 2>/dev/null))
PY_INC  := $(word 1,$(PY_CONF))
PY_EXT  := $(word 2,$(PY_CONF))
PY_VER  := $(word 3,$(PY_CONF))
PY_SRC  := $(wildcard python/psmem/*.py)
PYMOD   = $(if $(PYTHON),$(BUILD)/python/psmem/_psmem$(PY_EXT))
PYMOD_ALL = $(if $(SAN),,$(if $(PYTHON),$(PYMOD) $(PY_SRC:python/%=$(BUILD)/python/%)))

.SECONDARY:
.PHONY: python all deps test check-layers test-numa numa-guest demo bench asan tsan install uninstall clean help check-deps

# NUMA guests (tests/numa/): kernel and busybox cached here, shared by every
# BUILD; NUMA_NODES: the guests `make test-numa` boots.
NUMA_GUEST ?= build/numa-guest
NUMA_NODES ?= 2 4+1

all: check-deps $(STATIC) $(SHARED) $(SHARED).0 $(LAUNCH) $(TEST_LIB) $(EXAMPLE) $(BINS) $(APPS) $(TESTS) $(BENCHES) $(FUZZ) $(PYMOD_ALL)

help:
	@echo "make deps    install missing Debian packages (apt, sudo when not root)"
	@echo "make         build everything into $(BUILD)/"
	@echo "make demo    deps + build + a small training job under psrun"
	@echo "make test    the test suite (cmocka; multi-process tests under psrun),"
	@echo "             then test-numa when qemu and the guest kernel are there"
	@echo "make check-layers  lib/ uses no layer above its own (make test runs it)"
	@echo "make test-numa  placement tests in QEMU guests (NUMA nodes: $(NUMA_NODES))"
	@echo "make bench   micro-benchmark, CSV on stdout"
	@echo "make asan    the test suite under AddressSanitizer"
	@echo "make tsan    the test suite under ThreadSanitizer"
	@echo "make install PREFIX=/usr/local"
	@echo "make python  the Python module into $(BUILD)/python (PYTHONPATH=$(BUILD)/python $(or $(PYTHON),python3))"

deps:
	@bash .ci/deps.sh $(DEB_PKGS)
	@bash tests/numa/fetch-guest.sh $(NUMA_GUEST)

# Kernel and busybox for the NUMA guests (apt-get download, cached).
numa-guest:
	@bash tests/numa/fetch-guest.sh $(NUMA_GUEST)

test-numa: all numa-guest
	@BUILD=$(BUILD) GUEST_DIR=$(NUMA_GUEST) bash tests/numa/run-guest.sh $(NUMA_NODES)

check-deps:
	@pkg-config --exists $(PKGS) cmocka openblas 2>/dev/null || { \
	  echo "psmem: missing build dependencies (pkg-config: $(PKGS) cmocka openblas); run 'make deps'" >&2; exit 1; }

$(BUILD)/%.o: %.c $(LIB_HDR) $(wildcard bin/*.h apps/*.h) | check-deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/test-hooks/%.o: %.c $(LIB_HDR) | check-deps
	@mkdir -p $(dir $@)
	@echo "  CC      $< (test hooks)"
	@$(CC) $(CFLAGS) -DPS_TEST_HOOKS -c $< -o $@

$(TEST_LIB): $(TEST_LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	@rm -f $@ && ar rcs $@ $^

$(LAUNCH): $(LAUNCH_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	@rm -f $@ && ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	@echo "  LD      $@"
	@$(CC) -shared -Wl,-soname,libpsmem.so.0 $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The soname that programs linked against build/lib ask for at run time.
$(SHARED).0: $(SHARED)
	@ln -sf libpsmem.so $@

$(EXAMPLE): docs/example.c lib/psmem.h $(SHARED).0
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $< -o $@ -L$(BUILD)/lib -lpsmem -Wl,-rpath,'$$ORIGIN/../lib' $(LDFLAGS) $(LDLIBS)

$(BUILD)/bin/%: $(BUILD)/bin/%.o $(STATIC)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/psrun: $(BUILD)/bin/psrun.o $(PSRUN_OBJ) $(LAUNCH) $(STATIC)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LAUNCH_LIBS) $(LDLIBS)

$(BUILD)/apps/%: $(BUILD)/apps/%.o $(APP_COMMON:%.c=$(BUILD)/%.o) $(STATIC)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%.o: tests/%.c $(LIB_HDR) $(wildcard tests/*.h apps/*.h) | check-deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(CMOCKA_CFLAGS) -c $< -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_COMMON:%.c=$(BUILD)/%.o) $(APP_COMMON:%.c=$(BUILD)/%.o) $(LAUNCH) $(TEST_LIB)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LAUNCH_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(APP_COMMON:%.c=$(BUILD)/%.o) $(STATIC)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c lib/net/frame.c lib/net/frame.h lib/net/filter.c lib/net/filter.h lib/base/util.c lib/launch/bridge.h lib/psmem.h
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(LIB_INC) tests/fuzz/fuzz_frame.c lib/net/frame.c lib/net/filter.c lib/base/util.c -lz -llz4 -pthread \
	  -o $@ 2>$@.log || { echo "  FUZZ    $(FUZZ_CC) cannot build a libFuzzer target (see $@.log): fuzz test skips"; rm -f $@; }

# No file or object of lib/ uses a layer above its own (lib/check-layers.sh).
check-layers: $(STATIC) $(LAUNCH)
	@bash lib/check-layers.sh $(BUILD)
# The extension carries its own copy of the library, built without jemalloc
# (PS_NO_JEMALLOC: private allocations through malloc):
# jemalloc's initial-exec TLS does not fit in the static TLS left to a
# library that Python dlopen()s ("cannot allocate memory in static TLS
# block").  Same sources and flags as $(STATIC) otherwise.
PY_LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/python/obj/%.o)
PY_LIB_HDR := $(shell find lib -name '*.h' 2>/dev/null)
PY_LDLIBS  = $(shell pkg-config --libs $(filter-out jemalloc,$(PKGS)) 2>/dev/null) -lz -lm -pthread

$(BUILD)/python/obj/%.o: %.c $(PY_LIB_HDR) | check-deps
	@mkdir -p $(dir $@)
	@echo "  CC      $< (python)"
	@$(CC) $(CFLAGS) -DPS_NO_JEMALLOC=1 -c $< -o $@

$(BUILD)/python/psmem/_psmem$(PY_EXT): python/psmem/_psmem.c $(PY_LIB_HDR) $(PY_LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  PYEXT   $@"
	@$(CC) $(filter-out -std=c11,$(CFLAGS)) -std=gnu11 -fvisibility=hidden -I$(PY_INC) -shared $(LDFLAGS) -o $@ \
	  python/psmem/_psmem.c $(PY_LIB_OBJ) $(PY_LDLIBS)

$(BUILD)/python/psmem/%.py: python/psmem/%.py
	@mkdir -p $(dir $@)
	@cp $< $@

python: $(PYMOD_ALL)

# The guests run the normal build only: sanitizers under TCG are too slow.
test: all check-layers
	@BUILD=$(BUILD) bash tests/run.sh
ifeq ($(SAN),)
	@if why=$$(BUILD=$(BUILD) GUEST_DIR=$(NUMA_GUEST) bash tests/numa/run-guest.sh --check); then \
	  BUILD=$(BUILD) GUEST_DIR=$(NUMA_GUEST) bash tests/numa/run-guest.sh $(NUMA_NODES); \
	else echo "$$why"; fi
else
	@echo "SKIP numa guest: sanitizer build ($(SAN)); make test runs the guests"
endif

demo: deps
	@$(MAKE) --no-print-directory all
	@bash apps/demo.sh $(BUILD)

bench: all
	@$(BUILD)/bench/micro

# bench/ucx_rpc (issue 13: the data path on UCX against plain TCP) needs UCX
# (Debian libucx-dev, not in DEB_PKGS).  `make all` builds it only where
# pkg-config knows ucx (and not under a sanitizer: UCX hooks malloc/mmap);
# `make bench-ucx` builds it or says why not; bench/ucx.sh runs it.
UCX_BENCH = $(if $(SAN),,$(if $(shell pkg-config --exists ucx 2>/dev/null && echo y),$(BUILD)/bench/ucx_rpc))
all: $(UCX_BENCH)
.PHONY: bench-ucx
bench-ucx:
	@if pkg-config --exists ucx 2>/dev/null; then $(MAKE) --no-print-directory $(BUILD)/bench/ucx_rpc; \
	else echo "SKIP bench-ucx: UCX not found (pkg-config ucx; Debian: libucx-dev)"; fi

$(BUILD)/bench/ucx_rpc: bench/ucx_rpc.c
	@mkdir -p $(dir $@)
	@echo "  CC+LD   $@"
	@$(CC) -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread $(shell pkg-config --cflags ucx) \
	  $(LDFLAGS) -o $@ $< $(shell pkg-config --libs ucx)

# kge's batch scoring and gradients are matrix products: an optimized BLAS
# (OpenBLAS, Debian's libopenblas-dev), for kge only.
DEB_PKGS += libopenblas-dev
$(BUILD)/apps/kge: LDLIBS += -lopenblas
# kge reads no errno of libm: sqrtf then vectorizes (Adagrad's steps, the N3
# penalty); GCC's optimize attribute cannot turn this on per function.
$(BUILD)/apps/kge.o: CFLAGS += -fno-math-errno
# test_kge_kernels includes apps/kge.c (its kernels are static): the same
# flags and library.
$(BUILD)/tests/test_kge_kernels.o: apps/kge.c apps/common.h
$(BUILD)/tests/test_kge_kernels.o: CFLAGS += -fno-math-errno
$(BUILD)/tests/test_kge_kernels: LDLIBS += -lopenblas
# test_link_direct includes lib/net/bridge_link.c (static functions).
$(BUILD)/tests/test_link_direct.o: lib/net/bridge_link.c

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=address OPT=-O1 test

tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan SAN=thread OPT=-O1 test

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/libpsmem.so.0
	ln -sf libpsmem.so.0 $(DESTDIR)$(PREFIX)/lib/libpsmem.so
	install -m 644 lib/psmem.h lib/psmem_static.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/bin/psrun $(BUILD)/bin/psstat $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@REQUIRES@|$(LIB_PKGS)|g' lib/psmem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/psmem.pc
	@if [ -n "$(PYMOD)" ]; then \
	  d=$(DESTDIR)$(PREFIX)/lib/python$(PY_VER)/site-packages/psmem; \
	  echo "install -d $$d"; install -d $$d; \
	  install -m 644 $(PY_SRC) $$d/ && install -m 755 $(PYMOD) $$d/ && \
	  echo "  psmem Python package in $$d (PYTHONPATH=$(DESTDIR)$(PREFIX)/lib/python$(PY_VER)/site-packages)"; \
	else echo "  no Python with numpy found: psmem Python package not installed"; fi

clean:
	rm -rf build
