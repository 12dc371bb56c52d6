-- release.symlink: the Capistrano-style release switch.
--
-- Points the `current` symlink at a release directory.  The new link is made
-- beside the old one and renamed over it (zdm.file.symlink), so a reader
-- sees the old release or the new one, never no link.  undo puts back the
-- link that was there before, or removes the link when there was none.

-- the directory a path is in ("." for a bare name)
local function dirname(path)
	local d = path:match("^(.*)/[^/]*$")
	if d == nil then return "." end
	if d == "" then return "/" end
	return d
end

-- a relative target is resolved from the link's directory, as the kernel does
local function resolve(link, target)
	if target:sub(1, 1) == "/" then return target end
	return dirname(link) .. "/" .. target
end

return {
	description = "Point a `current` symlink at a release directory (atomic switch)",
	params = {
		{name = "link", type = "path", required = true,
		 doc = "path of the `current` symlink"},
		{name = "target", type = "string", required = true,
		 doc = "release directory to point it at"},
	},
	read_only = false,
	idempotent = true,	-- pointing the link at the same target twice is harmless

	validate = function(p)
		local problems = {}
		for _, name in ipairs({"link", "target"}) do
			local v = p[name]
			-- a ${{ ... }} not resolved yet is checked again at run time
			if not zdm.is_expr(v) and (type(v) ~= "string" or v == "") then
				problems[#problems + 1] = {param = name, message = "must be a non-empty path"}
			end
		end
		return problems
	end,

	-- planned["release.symlink LINK"]: the target an earlier planned step
	-- points the link at
	plan = function(p, planned)
		planned = planned or {}
		local key = "release.symlink " .. p.link
		local old = planned[key] or zdm.file.readlink(p.link)
		planned[key] = p.target
		if old == nil then
			return string.format("point %s at %s (no link yet)", p.link, p.target)
		end
		return string.format("point %s at %s (now: %s)", p.link, p.target, old)
	end,

	-- --dry-run: what run() refuses, found without switching
	check = function(ctx, p)
		local kind = zdm.file.type(resolve(p.link, p.target))
		if kind == nil then
			return nil, string.format("release directory '%s' does not exist", p.target)
		elseif kind ~= "dir" then
			return nil, string.format("release directory '%s' is not a directory", p.target)
		end
		local now = zdm.file.type(p.link)
		if now ~= nil and now ~= "link" then
			return nil, string.format("'%s' exists and is not a symlink; the run would refuse to replace it", p.link)
		end
		if zdm.file.type(dirname(p.link)) ~= "dir" then
			return nil, string.format("the link's directory '%s' does not exist", dirname(p.link))
		end
		return string.format("release directory %s is there; %s is %s", p.target, p.link,
			now and "a symlink" or "not there yet")
	end,

	run = function(ctx, p)
		local link, target = p.link, p.target

		local kind = zdm.file.type(resolve(link, target))
		if kind == nil then
			return nil, string.format("release directory '%s' does not exist", target)
		elseif kind ~= "dir" then
			return nil, string.format("release directory '%s' is not a directory", target)
		end

		-- never replace a real file or directory that happens to be there
		local now = zdm.file.type(link)
		if now ~= nil and now ~= "link" then
			return nil, string.format("'%s' exists and is not a symlink; refusing to replace it", link)
		end

		local old = now and zdm.file.readlink(link) or nil
		-- run again after a crash: the link may already point at target;
		-- what must come back on undo is what was there before the first try
		if ctx.prior then old = ctx.prior.previous end
		local ok, err = zdm.file.symlink(target, link)
		if not ok then return nil, err end
		zdm.log(string.format("%s -> %s (was %s)", link, target, old or "no link"))

		return {
			outputs = {previous = old or "", current = target},
			undo_data = {link = link, previous = old},	-- previous absent: no link before
		}
	end,

	-- the state run() replaces, recorded in the journal before it acts
	snapshot = function(ctx, p)
		local now = zdm.file.type(p.link)
		if now ~= nil and now ~= "link" then return nil end
		return {link = p.link, previous = now and zdm.file.readlink(p.link) or nil}
	end,

	undo = function(ctx, p, u)
		if u == nil then
			return nil, "no undo_data was recorded for this step: point the link back by hand"
		end
		local link = u.link or p.link
		local ok, err = true, nil
		if u.previous then
			-- already there (the switch never happened): leave the link alone
			if zdm.file.readlink(link) == u.previous then return nil end
			ok, err = zdm.file.symlink(u.previous, link)
		elseif zdm.file.type(link) == "link" then
			ok, err = zdm.file.remove(link)
		end
		if not ok then return nil, err end
	end,
}
