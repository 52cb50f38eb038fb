--- Server settings: the "msa" section the server reads (same keys as VS Code's `msa.*` settings and
--- lsp/options.py), their defaults, merging a user's table over them and flattening to dotted names.
--- Not here: sending them (init.lua does that).
local M = {}

--- Defaults, nested exactly as the server expects them under "msa".
M.defaults = {
  model = "",
  worker = { address = "", tokenFile = "", command = {}, devices = "" },
  cache = { dir = "", maxGiB = 20 },
  layout = "parallel",
  attention = "sparse",
  inlineCompletion = { enable = true },
  completion = { maxTokens = 64, debounceMs = 150, memberNames = true },
  reasoning = "adaptive",
  index = { exclude = {}, maxFileSize = 1000000, includeSecrets = false },
  diagnostics = { debounceMs = 200, unusualCode = false },
}

local function is_section(value)
  return type(value) == "table" and not vim.islist(value) and next(value) ~= nil
end

--- Dotted names ("msa.worker.address") of every setting, sorted.
function M.keys()
  local keys = {}
  local function walk(tbl, prefix)
    for name, value in pairs(tbl) do
      local key = prefix .. "." .. name
      if is_section(value) then walk(value, key) else table.insert(keys, key) end
    end
  end
  walk(M.defaults, "msa")
  table.sort(keys)
  return keys
end

--- `over` merged into a copy of `base`, section by section as M.defaults nests them; lists (and
--- every other value) replace. An unknown key is an error naming it, so a typo is not ignored.
local function merge_into(base, over, defaults, prefix)
  local merged = vim.deepcopy(base)
  for name, value in pairs(over or {}) do
    local key = prefix .. "." .. name
    if defaults[name] == nil then
      error(("msa_lsp: unknown setting %s"):format(key), 0)
    end
    if is_section(defaults[name]) then
      if type(value) ~= "table" then
        error(("msa_lsp: setting %s must be a table"):format(key), 0)
      end
      merged[name] = merge_into(base[name], value, defaults[name], key)
    else
      merged[name] = vim.deepcopy(value)
    end
  end
  return merged
end

--- The defaults with `user` merged over them.
function M.merge(user)
  return merge_into(M.defaults, user, M.defaults, "msa")
end

--- `partial` merged over the current settings `current`.
function M.update(current, partial)
  return merge_into(current, partial, M.defaults, "msa")
end

--- Payload for workspace/didChangeConfiguration (empty Lua tables encode as JSON arrays).
function M.change_payload(settings)
  return { settings = { msa = settings } }
end

return M
