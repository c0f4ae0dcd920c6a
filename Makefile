# Thin wrapper around CMake presets. See README.md.
JOBS ?= $(shell nproc)
PYTEST ?= /usr/bin/python3 -m pytest

# Installation directories (GNU names). `make install` writes only under
# $(DESTDIR), so a package build can run it into its staging directory:
#   make install DESTDIR=debian/tmp PREFIX=/usr
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
# sbin, as haproxy and nginx: the daemon is started by root (systemd) to bind
# low ports and read private keys, and the certificate tools are operator tools.
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# A directory systemd reads: /usr/local/lib/systemd/system for /usr/local,
# /usr/lib/systemd/system for /usr (Debian's packages may give /lib/...).
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
INSTALL ?= install

.PHONY: all setup build debug release man asan fuzz valgrind test unit e2e demo bench lint \
	format clean install uninstall deb

# Plain `make`: the optimized, hardened release binary (build-release/, the
# one `make install` installs) and the man pages.
all: release man

# SETUP_PURPOSE: what scripts/setup.sh installs packages for (see the script).
setup:
	@bash scripts/setup.sh $(SETUP_PURPOSE)

build/CMakeCache.txt:
	cmake --preset debug >/dev/null

# The debug build (build/), which make unit, e2e, test and valgrind use.
debug build: build/CMakeCache.txt
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

test asan valgrind: SETUP_PURPOSE = test
fuzz: SETUP_PURPOSE = fuzz
demo: SETUP_PURPOSE = demo
bench: SETUP_PURPOSE = bench

test: setup
	$(MAKE) lint
	$(MAKE) unit
	bash scripts/check-hardening.sh build/tollgate
	$(MAKE) e2e

asan: setup build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)
	TOLLGATE_BIN=$(CURDIR)/build-asan/tollgate TOLLGATE_ASAN=1 $(PYTEST) -q tests/e2e

# libFuzzer + ASan + UBSan build (clang) of tests/fuzz/fuzz_*.c; each target
# runs FUZZ_SECONDS on its seed corpus. New inputs go to build-fuzz/corpus/,
# crashes to build-fuzz/artifacts/; the seeds in tests/fuzz/corpus/ are
# only read.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_FLAGS ?= -timeout=10 -rss_limit_mb=2048 -max_len=65536

build-fuzz/CMakeCache.txt:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="-O1 -g" \
		-DTG_FUZZ=ON >/dev/null

fuzz: setup build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j $(JOBS) --target fuzz_all
	@mkdir -p build-fuzz/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p build-fuzz/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		build-fuzz/fuzz_$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=build-fuzz/artifacts/$$t- \
			build-fuzz/corpus/$$t tests/fuzz/corpus/$$t 2>build-fuzz/fuzz_$$t.log \
			|| { tail -40 build-fuzz/fuzz_$$t.log; exit 1; }; \
		grep -E '^stat::number_of_executed_units|^Done' build-fuzz/fuzz_$$t.log || true; \
	done

# The unit tests and fuzz corpus replays under valgrind memcheck: any error
# or leak fails. VALGRIND_SKIP names binaries to leave out (CI leaves out
# test_pki: its RSA key generation takes about nine minutes under valgrind).
VALGRIND_SKIP ?=
VALGRIND ?= valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-fds=no -q

valgrind: setup build
	@failed=0; \
	for t in build/test_* build/fuzz_*; do \
		[ -x $$t ] || continue; n=$$(basename $$t); arg=""; \
		case " $(VALGRIND_SKIP) " in *" $$n "*) echo "valgrind: $$n skipped"; continue;; esac; \
		case $$n in fuzz_*) arg=tests/fuzz/corpus/$${n#fuzz_};; esac; \
		if TG_TEST_DATA=$(CURDIR)/tests/unit/data $(VALGRIND) $$t $$arg >build/valgrind-$$n.log 2>&1; \
		then echo "valgrind: $$n ok"; \
		else echo "valgrind: $$n FAILED"; tail -40 build/valgrind-$$n.log; failed=$$((failed + 1)); fi; \
	done; \
	echo "valgrind: $$failed failed"; test $$failed -eq 0

demo: setup release
	./build-release/tollgate demo

bench: setup release
	bash bench/run.sh all

lint:
	@bash scripts/lint.sh

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]')

# Man pages, made with pandoc from markdown: tollgate.yaml(5) from
# docs/CONFIG.md itself, with a NAME/SYNOPSIS header (man/tollgate.yaml.5.head.md),
# so the reference and the man page cannot drift apart; tollgate(8) from
# man/tollgate.8.md (pandoc's markdown, for its definition lists). pandoc
# reads the GitHub markdown the docs are written in (tables included) as it
# is; scdoc would need every page rewritten in its own syntax. --shift-heading-level-by=-1 makes each page's "#" title the man
# title and its "##" sections man sections.
MAN_DIR := build-release/man
MANPAGES := $(MAN_DIR)/tollgate.8 $(MAN_DIR)/tollgate.yaml.5
PANDOC ?= pandoc
PANDOC_MAN = $(PANDOC) --standalone --to man --shift-heading-level-by=-1 \
	--lua-filter man/tables.lua --metadata date="" --metadata footer="tollgate $(VERSION)" --metadata header="tollgate"
VERSION := $(shell sed -n "s/^project.tollgate VERSION \([0-9.]*\).*/\1/p" CMakeLists.txt)

man: $(MANPAGES)

$(MANPAGES): | pandoc-present
.PHONY: pandoc-present
pandoc-present:
	@command -v $(PANDOC) >/dev/null || { echo "make: $(PANDOC) makes the man pages;" \
		"install it with scripts/setup.sh build (make setup)" >&2; exit 1; }

$(MAN_DIR)/tollgate.8: man/tollgate.8.md man/tables.lua Makefile
	@mkdir -p $(MAN_DIR)
	$(PANDOC_MAN) --from markdown --metadata section=8 -o $@ $<

$(MAN_DIR)/tollgate.yaml.5: man/tollgate.yaml.5.head.md docs/CONFIG.md man/tables.lua Makefile
	@mkdir -p $(MAN_DIR)
	$(PANDOC_MAN) --from gfm --metadata section=5 -o $@ man/tollgate.yaml.5.head.md docs/CONFIG.md

# Installs what `make` built. Never overwrites an existing config: an edited
# $(SYSCONFDIR)/tollgate/tollgate.yaml stays, and `make uninstall` leaves it
# (and $(SYSCONFDIR)/tollgate/) too. The unit's paths follow SBINDIR and SYSCONFDIR.
install: all
	@# Only missing directories are made (0755): install -d would also chmod
	@# an existing one, such as a setgid /usr/local/sbin.
	@for d in $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(LOGROTATEDIR) \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8; do \
		[ -d $$d ] || { echo "$(INSTALL) -d -m 0755 $$d"; $(INSTALL) -d -m 0755 $$d; } || exit 1; \
	done
	@# The config directory holds keys: made 0750 when it does not exist yet.
	[ -d $(DESTDIR)$(SYSCONFDIR)/tollgate ] || $(INSTALL) -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/tollgate
	$(INSTALL) -m 0755 build-release/tollgate $(DESTDIR)$(SBINDIR)/tollgate
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tollgate/tollgate.yaml ]; then \
		echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/tollgate/tollgate.yaml"; \
	else \
		echo "$(INSTALL) -m 0640 contrib/tollgate.yaml $(DESTDIR)$(SYSCONFDIR)/tollgate/tollgate.yaml"; \
		$(INSTALL) -m 0640 contrib/tollgate.yaml $(DESTDIR)$(SYSCONFDIR)/tollgate/tollgate.yaml; \
	fi
	sed -e 's|/usr/local/sbin/tollgate|$(SBINDIR)/tollgate|g' \
		-e 's|/etc/tollgate/|$(SYSCONFDIR)/tollgate/|g' contrib/tollgate.service \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/tollgate.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/tollgate.service
	$(INSTALL) -m 0644 contrib/tollgate.logrotate $(DESTDIR)$(LOGROTATEDIR)/tollgate
	$(INSTALL) -m 0644 contrib/tollgate.bash-completion $(DESTDIR)$(BASHCOMPDIR)/tollgate
	$(INSTALL) -m 0644 $(MAN_DIR)/tollgate.8 $(DESTDIR)$(MANDIR)/man8/tollgate.8
	$(INSTALL) -m 0644 $(MAN_DIR)/tollgate.yaml.5 $(DESTDIR)$(MANDIR)/man5/tollgate.yaml.5

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tollgate $(DESTDIR)$(SYSTEMDUNITDIR)/tollgate.service \
		$(DESTDIR)$(LOGROTATEDIR)/tollgate $(DESTDIR)$(BASHCOMPDIR)/tollgate \
		$(DESTDIR)$(MANDIR)/man8/tollgate.8 $(DESTDIR)$(MANDIR)/man5/tollgate.yaml.5
	@echo "uninstall: left $(DESTDIR)$(SYSCONFDIR)/tollgate/ (the config and keys) in place"

# Debian package (debian/): the files git knows (committed or not, minus the
# ignored ones) are copied to DEB_WORK and built there with
# `dpkg-buildpackage -us -uc -b`; the .deb files land in DEB_DIST.
DEB_JOBS ?= 2
DEB_WORK ?= $(CURDIR)/build-deb
DEB_DIST ?= $(CURDIR)/dist

deb:
	@command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null || \
		{ echo "deb: needs dpkg-dev, debhelper, fakeroot and lintian (apt-get install them)" >&2; exit 1; }
	rm -rf $(DEB_WORK)
	mkdir -p $(DEB_WORK)/tollgate $(DEB_DIST)
	git ls-files -z --cached --others --exclude-standard | \
		tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(DEB_WORK)/tollgate
	cd $(DEB_WORK)/tollgate && DEB_BUILD_OPTIONS="parallel=$(DEB_JOBS) $(DEB_BUILD_OPTIONS)" \
		dpkg-buildpackage -us -uc -b
	cp $(DEB_WORK)/*.deb $(DEB_DIST)/
	@ls -1 $(DEB_DIST)/*.deb

clean:
	rm -rf build build-asan build-release build-fuzz build-deb dist
