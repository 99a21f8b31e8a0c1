// The API docs page: Swagger UI from the installed swagger-ui-bundle package (no CDN). "Try it out" sends the
// X-Requested-With header that the app asks of every request that changes data.
"use strict";
window.ui = window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
  requestInterceptor: (req) => { req.headers["X-Requested-With"] = "mlupdate-docs"; return req; },
});
