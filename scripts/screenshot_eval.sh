#!/usr/bin/env bash
# Screenshot a `swiftkit eval` page with headless Chromium, to look at what a person will see.
#
#   scripts/screenshot_eval.sh runs/smoke_tiny/v1/eval/report.html [out.png]
#
# Default output: report.png beside the page. WIDTH/HEIGHT set the window (default 1280x2000: the page's top part;
# HEIGHT=6000 for all of a long one). Exit 3 when no Chromium is installed (Debian: apt-get install chromium, plus
# fonts-wqy-zenhei or fonts-noto-cjk for the Chinese text).
set -euo pipefail

html=${1:?usage: scripts/screenshot_eval.sh REPORT.html [OUT.png]}
[[ -f $html ]] || { echo "screenshot_eval: $html: no such file" >&2; exit 2; }
out=${2:-${html%.html}.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "screenshot_eval: no chromium on PATH (apt-get install chromium)" >&2; exit 3; }

page=$(realpath "$html")
target=$(realpath -m "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: containers and root, where Chromium's sandbox cannot start; the page is our own file.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --user-data-dir="$profile" \
    --window-size="${WIDTH:-1280},${HEIGHT:-2000}" --screenshot="$target" "file://$page" >/dev/null 2>&1
[[ -s $target ]] || { echo "screenshot_eval: chromium wrote no $target" >&2; exit 1; }
echo "$target"
