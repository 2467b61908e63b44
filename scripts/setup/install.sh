# install.sh — 5. the command, its man pages and shell completion.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
# --- 5. The command and its man pages -------------------------------------
# The build compiles the CLI into one executable, dist/stasis (Bun, from the
# npm registry: a fraction of Node's start-up). When it was built and runs,
# it is copied (each install one rename, and skipped when identical) to
# /usr/local/bin/stasis: a copy, not a link into .build/, so the path that
# running containers' exit hooks call stays valid through rebuilds. Otherwise
# /usr/local/bin/stasis links to bin/stasis, run by Node.
STASIS_CMD=/usr/local/bin/stasis
stasis_version=$(node -p 'require("./package.json").version')
if ((build_ok)) && [[ -x $REPO/dist/stasis ]] &&
   [[ $("$REPO/dist/stasis" --version 2>/dev/null) == "$stasis_version" ]]; then
  if [[ -f $STASIS_CMD && ! -L $STASIS_CMD ]] && cmp -s "$REPO/dist/stasis" "$STASIS_CMD"; then
    note "stasis: $STASIS_CMD is already the compiled stasis $stasis_version (dist/stasis)"
  else
    install -m 0755 "$REPO/dist/stasis" "$STASIS_CMD.new.$$"
    mv -f "$STASIS_CMD.new.$$" "$STASIS_CMD"
    note "stasis: installed the compiled stasis $stasis_version (dist/stasis) as $STASIS_CMD"
  fi
elif [[ -L $STASIS_CMD && $(readlink "$STASIS_CMD") == "$REPO/bin/stasis" ]]; then
  note "stasis: $STASIS_CMD already links to $REPO/bin/stasis (Node; no compiled dist/stasis)"
else
  ln -sfn "$REPO/bin/stasis" "$STASIS_CMD.new.$$"
  mv -Tf "$STASIS_CMD.new.$$" "$STASIS_CMD"
  note "stasis: linked $STASIS_CMD -> $REPO/bin/stasis (Node; no compiled dist/stasis)"
fi

# man.mjs writes dist/man/ (after the build, which empties dist/).
node "$REPO/scripts/man.mjs"
man_new=()
for page in "$REPO"/dist/man/*.1; do
  [[ -e $page ]] || continue
  dest=$MAN_DIR/$(basename "$page")
  if ! cmp -s "$page" "$dest"; then
    install -D -m 0644 "$page" "$dest"
    man_new+=("$(basename "$page")")
  fi
done
if ((${#man_new[@]})); then
  command -v mandb >/dev/null && { mandb -q 2>/dev/null || true; }
  note "man: installed ${man_new[*]} into $MAN_DIR"
else
  note "man: pages up to date ($MAN_DIR)"
fi

# Shell completion (yargs' scripts; they run `stasis --get-yargs-completions`).
# bash: bash-completion sources /etc/bash_completion.d/ when a shell starts,
# so `complete -p stasis` answers at once (its completions/ folder would be
# loaded only at the first TAB). zsh: an autoloaded _stasis in a folder Debian's zsh has on fpath;
# yargs' script ends by binding its function with compdef, which suits a
# script sourced from .zshrc, so as _stasis it calls the function itself.
if ((build_ok)); then
  completion_new=()
  "$STASIS_CMD" completion bash | write_file "$BASH_COMPLETION" 0644 && completion_new+=("$BASH_COMPLETION")
  "$STASIS_CMD" completion zsh |
    sed 's/^compdef _stasis_yargs_completions stasis$/if [[ $funcstack[1] == _stasis ]]; then _stasis_yargs_completions "$@"; else compdef _stasis_yargs_completions stasis; fi/' |
    write_file "$ZSH_COMPLETION" 0644 && completion_new+=("$ZSH_COMPLETION")
  if ((${#completion_new[@]})); then
    note "completion: installed ${completion_new[*]}"
  else
    note "completion: up to date ($BASH_COMPLETION, $ZSH_COMPLETION)"
  fi
fi
