# zdm - zero-downtime migration orchestrator
PREFIX   ?= /usr/local
CC       ?= cc
PKGS     := yaml-0.1 lua5.4 jansson libcrypto libcurl libssh2 libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS   ?= -O2 -g
# flags zdm needs whatever CFLAGS the user passes (make CFLAGS=... keeps these)
ZDM_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
            -Iinclude -Isrc $(PKG_CFLAGS) -DZDM_PREFIX='"$(PREFIX)"'
LDLIBS   += $(PKG_LIBS) -lm

BUILD    ?= build
SRCS     := $(wildcard src/*/*.c)
# files built into zdm (scripts/embed.sh): zdm init's templates, zdm completion's scripts,
# and what zdm report's pages inline: uPlot (vendor/uplot) and the page's own script and style
EMBED    := $(sort $(wildcard templates/*.yml)) completion/zdm.bash completion/_zdm \
            vendor/uplot/uPlot.iife.min.js vendor/uplot/uPlot.min.css vendor/uplot/VERSION \
            src/report/html.js src/report/html.css
OBJS     := $(SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/embedded.o
DEPS     := $(OBJS:.o=.d)
BIN      := $(BUILD)/zdm

.PHONY: all test asan demo install deb deps clean bench bench-zdt bench-state bench-scale unit fuzz fuzz-build crash-test

all: $(BIN)

$(BIN): $(OBJS)
	$(CC) $(ZDM_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ZDM_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/gen/embedded.c: scripts/embed.sh $(EMBED)
	@mkdir -p $(dir $@)
	bash scripts/embed.sh $(EMBED) >$@.tmp && mv $@.tmp $@

$(BUILD)/gen/embedded.o: $(BUILD)/gen/embedded.c
	$(CC) $(ZDM_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(DEPS)

deps:
	bash scripts/deps.sh

# unit tests for C modules (tests/unit/*.c linked against the objects but main)
UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_BIN  := $(BUILD)/unit-tests
$(UNIT_BIN): $(UNIT_SRCS) $(filter-out $(BUILD)/src/cli/main.o,$(OBJS))
	$(CC) $(ZDM_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN)
	$(UNIT_BIN)

test: deps
	$(MAKE) all $(UNIT_BIN)
	ZDM_BIN=$(abspath $(BIN)) ZDM_UNIT=$(abspath $(UNIT_BIN)) bash scripts/run-tests.sh

# kill zdm before / after every durable journal write and tear every line, in
# each scenario, recover as an operator would, check the side effects
# (tests/crash/crash-test.sh; a subset runs in make test: tests/crash_harness.bats)
crash-test: all
	ZDM_BIN=$(abspath $(BIN)) bash tests/crash/crash-test.sh

asan: deps
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" build-asan/zdm build-asan/unit-tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ZDM_ASAN=1 ZDM_BIN=$(abspath build-asan/zdm) ZDM_UNIT=$(abspath build-asan/unit-tests) bash scripts/run-tests.sh

demo: deps
	$(MAKE) all $(BUILD)/loadgen
	ZDM_BIN=$(abspath $(BIN)) LOADGEN=$(abspath $(BUILD)/loadgen) bash scripts/demo.sh

# the load generator of bench/zero-downtime.sh and the demo (libcurl multi)
$(BUILD)/loadgen: bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(CFLAGS) $(LDFLAGS) -o $@ $< $(shell pkg-config --cflags --libs libcurl jansson)

bench: all
	bash bench/overhead.sh
	bash bench/gates.sh
	bash bench/audit.sh
	$(MAKE) bench-zdt
	bash bench/pg_migrate.sh
	bash bench/postgres.sh
	bash bench/ssh.sh
	$(MAKE) bench-state

# the PostgreSQL state beside a state dir: per-step cost, lock hand-over, 10,000 runs
bench-state: all
	ZDM_BIN=$(abspath $(BIN)) bash bench/state.sh

# how validate, plan, run, status, log, audit verify, resume and rollback grow with
# 1k-10k steps (SCALES="1000 3000 10000 30000" for more); see bench/README.md
bench-scale: all
	ZDM_BIN=$(abspath $(BIN)) bash bench/scale.sh

bench-zdt: all $(BUILD)/loadgen
	ZDM_BIN=$(abspath $(BIN)) LOADGEN=$(abspath $(BUILD)/loadgen) bash bench/zero-downtime.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/zdm/plugins \
	    $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/zdm
	cd plugins && find . -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(PREFIX)/share/zdm/plugins/{} \;
	install -m 644 docs/zdm.1 $(DESTDIR)$(PREFIX)/share/man/man1/zdm.1
	install -m 644 docs/zdm-runbook.5 $(DESTDIR)$(PREFIX)/share/man/man5/zdm-runbook.5
	install -m 644 completion/zdm.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/zdm
	install -m 644 completion/_zdm $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_zdm

# the Debian package $(BUILD)/zdm_VERSION_ARCH.deb (scripts/deb.sh): zdm built
# again with PREFIX=/usr in $(BUILD)/deb/obj, staged in $(BUILD)/deb/pkg/root as
# `make install PREFIX=/usr` would (man pages gzipped, runbooks/ as examples
# in /usr/share/doc/zdm), Depends from dpkg-shlibdeps, packed by dpkg-deb
DEB_DIR := $(BUILD)/deb
deb:
	$(MAKE) BUILD=$(DEB_DIR)/obj PREFIX=/usr $(DEB_DIR)/obj/zdm
	DEB_BIN=$(abspath $(DEB_DIR)/obj/zdm) DEB_DIR=$(abspath $(DEB_DIR)/pkg) OUT_DIR=$(abspath $(BUILD)) \
	    bash scripts/deb.sh

# libFuzzer harnesses (fuzz/fuzz_*.c) over the same objects, built with clang
# in build-fuzz/; scripts/fuzz.sh makes seed corpora from tests/data and runs
# each for FUZZ_SECONDS (docs: fuzz/README.md)
FUZZ_NAMES   := runbook expr journal events
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined
$(BUILD)/fuzz-%: fuzz/fuzz_%.c $(filter-out $(BUILD)/src/cli/main.o,$(OBJS))
	$(CC) $(ZDM_CFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-build: deps
	$(MAKE) BUILD=build-fuzz CC=clang CFLAGS="$(FUZZ_CFLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	    $(FUZZ_NAMES:%=build-fuzz/fuzz-%)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BIN=$(abspath build-fuzz) bash scripts/fuzz.sh $(FUZZ_NAMES)

clean:
	rm -rf build build-asan build-fuzz

# no include cycles between modules (scripts/check-includes.sh), resolved with the compiler's -I directories
.PHONY: check-includes
check-includes:
	bash scripts/check-includes.sh $(filter -I%,$(ZDM_CFLAGS))
