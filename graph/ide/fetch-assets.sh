#!/usr/bin/env bash
# fetch-assets.sh refreshes the GraphiQL files embedded by package ide.
#
# They are the exact UMD/CSS files that gqlgen's playground would load from
# cdn.jsdelivr.net, taken from the npm tarballs instead, so the IDE works with
# no network. The script packs the pinned versions into a temporary directory,
# copies the files to ./assets and checks every file against the SRI hash in
# ide.go (the same pins gqlgen v0.17.98 hard-codes; the explorer's CSS is
# dist/style.css, which has its own hash because jsdelivr's style.min.css is a
# CDN-minified file that is not in the package).
#
# To move to new versions: change the versions below, run the script, and put
# the sha256 values it prints into ide.go (and into EXPECTED here).
#
# Usage: graph/ide/fetch-assets.sh   (needs npm, tar, openssl; talks only to the npm registry)
set -euo pipefail

cd "$(dirname "$0")"
here=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

GRAPHIQL=graphiql@4.1.2
REACT=react@18.2.0
REACT_DOM=react-dom@18.2.0
EXPLORER=@graphiql/plugin-explorer@4.0.6

# destination (under assets/) -> source inside the unpacked tarball
declare -A FILES=(
	[graphiql/graphiql.min.js]=graphiql/package/graphiql.min.js
	[graphiql/graphiql.min.css]=graphiql/package/graphiql.min.css
	[graphiql/LICENSE]=graphiql/package/LICENSE
	[react/react.production.min.js]=react/package/umd/react.production.min.js
	[react/LICENSE]=react/package/LICENSE
	[react-dom/react-dom.production.min.js]=react-dom/package/umd/react-dom.production.min.js
	[react-dom/LICENSE]=react-dom/package/LICENSE
	[explorer/index.umd.js]=explorer/package/dist/index.umd.js
	[explorer/style.css]=explorer/package/dist/style.css
)

# destination -> expected SRI (sha256), as in ide.go
declare -A EXPECTED=(
	[graphiql/graphiql.min.js]=sha256-hnImuor1znlJkD/FOTL3jayfS/xsyNoP04abi8bFJWs=
	[graphiql/graphiql.min.css]=sha256-MEh+B2NdMSpj9kexQNN3QKc8UzMrCXW/Sx/phcpuyIU=
	[react/react.production.min.js]=sha256-S0lp+k7zWUMk2ixteM6HZvu8L9Eh//OVrt+ZfbCpmgY=
	[react-dom/react-dom.production.min.js]=sha256-IXWO0ITNDjfnNXIu5POVfqlgYoop36bDzhodR6LW5Pc=
	[explorer/index.umd.js]=sha256-UM8sWOS0Xa9yLY85q6Clh0pF4qpxX+TOcJ41flECqBs=
	[explorer/style.css]=sha256-aJCaSuI7+t/EWRrLTis8jU9EFTua5/o7fnwxnroxDvE=
)

sri() { # sri ALGO FILE -> ALGO-base64(digest)
	printf '%s-%s' "$1" "$(openssl dgst "-$1" -binary "$2" | base64 -w0)"
}

cd "$tmp"
for spec in "$GRAPHIQL:graphiql" "$REACT:react" "$REACT_DOM:react-dom" "$EXPLORER:explorer"; do
	pkg=${spec%:*} dir=${spec##*:}
	tgz=$(npm pack --silent "$pkg")
	mkdir "$dir"
	tar -xzf "$tgz" -C "$dir"
	echo "packed $pkg ($tgz, npm integrity $(npm view "$pkg" dist.integrity))"
done

status=0
for dst in "${!FILES[@]}"; do
	mkdir -p "$here/assets/$(dirname "$dst")"
	cp "${FILES[$dst]}" "$here/assets/$dst"
	want=${EXPECTED[$dst]:-}
	[[ -z $want ]] && continue
	got=$(sri sha256 "$here/assets/$dst")
	if [[ $got == "$want" ]]; then
		echo "ok   $dst $got $(sri sha384 "$here/assets/$dst")"
	else
		echo "FAIL $dst: got $got, want $want" >&2
		status=1
	fi
done
exit $status
