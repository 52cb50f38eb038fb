--- msa-lsp for Neovim 0.11+: registers the server with vim.lsp.config/vim.lsp.enable, sends the
--- "msa" settings (init_options, workspace/configuration, didChangeConfiguration), wires ghost-text
--- inline completion (built-in vim.lsp.inline_completion on 0.12+, msa_lsp.inline on 0.11) with
--- accept/dismiss/next keymaps, user commands, and a statusline fed by msa/status.
---
---   require("msa_lsp").setup({
---     cmd = { "msa-lsp", "serve" },          -- how to start the server
---     settings = { model = "", worker = { address = "" }, completion = { maxTokens = 64 } },
---     inline = { debounce_ms = 75, keymaps = { accept = "<Tab>", dismiss = "<C-]>", next = "<M-]>", prev = "<M-[>" } },
---   })
local settings_mod = require("msa_lsp.settings")
local status = require("msa_lsp.status")
local inline = require("msa_lsp.inline")

local M = {}

M.name = "msa_lsp"

M.defaults = {
  cmd = { "msa-lsp", "serve" },
  filetypes = { "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust" },
  root_markers = { ".git", "pyproject.toml", "setup.py", "package.json", "tsconfig.json", "go.mod", "Cargo.toml" },
  settings = {},
  inline = {
    -- "auto": vim.lsp.inline_completion when Neovim has it (0.12+), else this plugin's own ghost text
    builtin = "auto",
    debounce_ms = 75,
    keymaps = { accept = "<Tab>", dismiss = "<C-]>", next = "<M-]>", prev = "<M-[>" },
  },
}

M.config = nil

local function builtin_inline()
  return M.config.inline.builtin ~= false and vim.lsp.inline_completion ~= nil
end

function M.client(bufnr)
  return vim.lsp.get_clients({ name = M.name, bufnr = bufnr })[1]
end

local function notify_settings()
  for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
    client.settings = { msa = M.config.settings }
    client:notify("workspace/didChangeConfiguration", settings_mod.change_payload(M.config.settings))
  end
end

--- Merges `partial` (same shape as setup's `settings`) into the live settings and tells the server.
function M.update_settings(partial)
  M.config.settings = settings_mod.update(M.config.settings, partial)
  notify_settings()
end

function M.inline_enabled()
  return M.config.settings.inlineCompletion.enable
end

function M.toggle_inline(enable)
  if enable == nil then enable = not M.inline_enabled() end
  M.update_settings({ inlineCompletion = { enable = enable } })
  if builtin_inline() then
    vim.lsp.inline_completion.enable(enable, { client_id = (M.client() or {}).id })
  else
    inline.set_enabled(enable)
  end
  vim.notify("msa_lsp: inline completion " .. (enable and "on" or "off"))
end

function M.statusline()
  return status.format(status.latest)
end

function M.execute(command)
  local client = M.client()
  if not client then
    vim.notify("msa_lsp: the language server is not running", vim.log.levels.WARN)
    return
  end
  client:exec_cmd({ title = command, command = command, arguments = {} })
end

local function feed(keys)
  vim.api.nvim_feedkeys(vim.keycode(keys), "n", false)
end

local function map_keys(bufnr)
  local keys = M.config.inline.keymaps
  local function map(lhs, action, fallback)
    if not lhs or lhs == "" then return end
    vim.keymap.set("i", lhs, function()
      if not action() and fallback then feed(lhs) end
    end, { buffer = bufnr, desc = "msa_lsp inline completion" })
  end
  if builtin_inline() then
    map(keys.accept, function() return vim.lsp.inline_completion.get({ bufnr = bufnr }) end, true)
    map(keys.next, function() vim.lsp.inline_completion.select({ bufnr = bufnr, count = 1 }) return true end)
    map(keys.prev, function() vim.lsp.inline_completion.select({ bufnr = bufnr, count = -1 }) return true end)
    -- dismiss: toggling the buffer off and on clears the current ghost text
    map(keys.dismiss, function()
      vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
      vim.lsp.inline_completion.enable(M.inline_enabled(), { bufnr = bufnr })
      return true
    end, true)
  else
    map(keys.accept, function() return inline.accept(bufnr) end, true)
    map(keys.dismiss, function()
      local shown = inline.visible(bufnr)
      inline.clear(bufnr)
      return shown
    end, true)
    map(keys.next, function() return inline.select(1, bufnr) end, true)
    map(keys.prev, function() return inline.select(-1, bufnr) end, true)
  end
end

local function on_attach(client, bufnr)
  if not client:supports_method("textDocument/inlineCompletion", bufnr) then
    return
  end
  if builtin_inline() then
    vim.lsp.inline_completion.enable(M.inline_enabled(), { bufnr = bufnr })
  else
    inline.attach(bufnr, client, { enable = M.inline_enabled(), debounce_ms = M.config.inline.debounce_ms })
  end
  map_keys(bufnr)
end

local function create_commands()
  local commands = {
    MsaRestartWorker = { function() M.execute("msa.restartWorker") end, "restart the inference worker" },
    MsaReindex = { function() M.execute("msa.reindex") end, "re-index the workspace" },
    MsaToggleInline = { function() M.toggle_inline() end, "toggle inline completion" },
    MsaLog = { function() vim.cmd.edit(vim.lsp.get_log_path()) end, "open the LSP log (server stderr)" },
  }
  for name, spec in pairs(commands) do
    vim.api.nvim_create_user_command(name, spec[1], { desc = "msa-lsp: " .. spec[2] })
  end
end

function M.setup(opts)
  opts = opts or {}
  local config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  config.cmd = opts.cmd or M.defaults.cmd -- lists replace, not merge
  config.filetypes = opts.filetypes or M.defaults.filetypes
  config.root_markers = opts.root_markers or M.defaults.root_markers
  config.settings = settings_mod.merge(opts.settings)
  M.config = config

  vim.lsp.config(M.name, {
    cmd = config.cmd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = config.settings,
    settings = { msa = config.settings },
    handlers = { ["msa/status"] = status.handler },
    on_attach = on_attach,
  })
  vim.lsp.enable(M.name)
  create_commands()
  return M
end

return M
